//! One request's history from one scan of its service's logs (what `cairn exec timeline`
//! prints): received → logged at (chunk, offset) → each replica's outcome → vote, quarantine or
//! pending → reply.

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};

use crate::records::{ExecRecord, Kind, code_name, digest, hex};
use crate::service_logs::ServiceLogs;

/// One event of a request's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineEvent {
    /// `received`, `logged`, `output`, `vote`, `quarantine`, `pending` or `reply`.
    pub event: &'static str,
    /// When, ms since the Unix epoch, by the clock of the process that recorded it (`None` if
    /// the record carries no time).
    pub at_ms: Option<u64>,
    /// The replica (outputs).
    pub replica: Option<u32>,
    /// The outcome: CRASH, TIMEOUT or a gRPC code's name (outputs, votes, replies).
    pub status: Option<String>,
    /// The outcome's digest, hex (outputs, votes).
    pub digest: Option<String>,
    /// Where the record is: chunk index in its log and byte offset.
    pub chunk: Option<u32>,
    /// See `chunk`.
    pub offset: Option<u64>,
    /// Anything else, for people: the method, a duration, agreeing and dissenting replicas.
    pub detail: String,
}

/// Which of the service's logs a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The input log.
    Inputs,
    /// The vote log.
    Votes,
    /// Replica I's output log.
    Outputs(u32),
}

/// A record of the service's logs and where it is.
#[derive(Clone, Debug)]
pub struct Located {
    /// Its log.
    pub source: Source,
    /// Chunk index in that log.
    pub chunk: u32,
    /// Byte offset in the chunk.
    pub offset: u64,
    /// The record.
    pub kind: Kind,
}

/// The events of `request_id` among `records` (each log's records in log order, the logs in
/// any order), sorted by time where known: the input first, the reply last.
pub fn assemble(request_id: &[u8], records: &[Located]) -> Vec<TimelineEvent> {
    let mut events = Vec::new();
    let mut replied = false;
    let at = |r: &Located| (Some(r.chunk), Some(r.offset));
    for r in records {
        let (chunk, offset) = at(r);
        match &r.kind {
            Kind::Input(input) if input.request_id.as_ref() == request_id => {
                if events.iter().any(|e: &TimelineEvent| e.event == "logged") {
                    // A resent copy: replicas run the first one only.
                    continue;
                }
                events.push(TimelineEvent {
                    event: "received",
                    at_ms: Some(input.received_at_ms),
                    detail: format!(
                        "{} (fingerprint {}, deadline {} ms)",
                        input.method,
                        hex(&input.fingerprint),
                        input.deadline_ms
                    ),
                    ..TimelineEvent::default()
                });
                events.push(TimelineEvent {
                    event: "logged",
                    chunk,
                    offset,
                    ..TimelineEvent::default()
                });
            }
            Kind::Output(o) if o.request_id.as_ref() == request_id => {
                if events
                    .iter()
                    .any(|e| e.event == "output" && e.replica == Some(o.replica))
                {
                    continue;
                }
                let mut detail = format!("ran {} µs", o.duration_us);
                if !o.detail.is_empty() {
                    detail = format!("{detail}: {}", o.detail);
                }
                if !o.message.is_empty() {
                    detail = format!("{detail}; message {:?}", o.message);
                }
                events.push(TimelineEvent {
                    event: "output",
                    at_ms: (o.at_ms > 0).then_some(o.at_ms),
                    replica: Some(o.replica),
                    status: Some(code_name(o.code)),
                    digest: Some(hex(&digest(o.code, &o.message, &o.response))),
                    chunk,
                    offset,
                    detail,
                });
            }
            Kind::Vote(v) if v.request_id.as_ref() == request_id => {
                let at_ms = (v.at_ms > 0).then_some(v.at_ms);
                let dissenting: Vec<u32> = v.dissenting.iter().map(|d| d.replica).collect();
                events.push(TimelineEvent {
                    event: "vote",
                    at_ms,
                    status: Some(code_name(v.code)),
                    digest: Some(hex(&v.digest)),
                    chunk,
                    offset,
                    detail: format!("agreeing {:?}, dissenting {dissenting:?}", v.agreeing),
                    ..TimelineEvent::default()
                });
                reply(&mut events, &mut replied, at_ms, code_name(v.code));
            }
            Kind::Quarantine(q) if q.request_id.as_ref() == request_id => {
                let at_ms = (q.at_ms > 0).then_some(q.at_ms);
                let outcomes: Vec<String> = q
                    .outcomes
                    .iter()
                    .map(|o| format!("{}: {}", o.replica, code_name(o.code)))
                    .collect();
                events.push(TimelineEvent {
                    event: "quarantine",
                    at_ms,
                    chunk,
                    offset,
                    detail: format!("fingerprint {}; outcomes {outcomes:?}", hex(&q.fingerprint)),
                    ..TimelineEvent::default()
                });
                reply(
                    &mut events,
                    &mut replied,
                    at_ms,
                    "FailedPrecondition".to_owned(),
                );
            }
            Kind::Pending(p) if p.request_id.as_ref() == request_id => {
                let at_ms = (p.at_ms > 0).then_some(p.at_ms);
                events.push(TimelineEvent {
                    event: "pending",
                    at_ms,
                    chunk,
                    offset,
                    detail: format!(
                        "replicas {:?} out after twice the deadline of {} ms",
                        p.out, p.deadline_ms
                    ),
                    ..TimelineEvent::default()
                });
                reply(
                    &mut events,
                    &mut replied,
                    at_ms,
                    "DeadlineExceeded".to_owned(),
                );
            }
            _ => {}
        }
    }
    // Stable: the input's two events first, then by time (unknown times keep their place
    // after the known ones before them).
    let rank = |e: &TimelineEvent| match e.event {
        "received" => 0,
        "logged" => 1,
        _ => 2,
    };
    let mut last = 0;
    let keyed: Vec<(u8, u64, TimelineEvent)> = events
        .into_iter()
        .map(|e| {
            last = e.at_ms.unwrap_or(last);
            (rank(&e), last, e)
        })
        .collect();
    let mut keyed = keyed;
    keyed.sort_by_key(|(rank, at, _)| (*rank, *at));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

/// The caller's answer: the first of the verdict records answered it.
fn reply(events: &mut Vec<TimelineEvent>, replied: &mut bool, at_ms: Option<u64>, status: String) {
    if std::mem::replace(replied, true) {
        return;
    }
    events.push(TimelineEvent {
        event: "reply",
        at_ms,
        status: Some(status),
        ..TimelineEvent::default()
    });
}

/// `request_id`'s history, from one replay of each of the service's logs.
pub async fn timeline(
    client: &Client,
    logs: &ServiceLogs,
    request_id: &[u8],
) -> anyhow::Result<Vec<TimelineEvent>> {
    let n = logs.replica_count(client).await?;
    let mut sources = vec![
        (Source::Inputs, logs.inputs()),
        (Source::Votes, logs.votes()),
    ];
    sources.extend((0..n).map(|i| (Source::Outputs(i), logs.output(i))));
    let mut records = Vec::new();
    for (source, path) in sources {
        let mut replay = client.replay(&path, ReplayOptions::default()).await?;
        while let Some(event) = replay.next().await {
            if let ReplayEvent::Record {
                chunk,
                offset,
                payload,
                ..
            } = event?
                && mentions(&payload, request_id)
                && let Some(kind) = ExecRecord::from_payload(&payload)
            {
                records.push(Located {
                    source,
                    chunk,
                    offset: offset.0,
                    kind,
                });
            }
        }
    }
    Ok(assemble(request_id, &records))
}

/// Whether `payload` holds the bytes of `request_id` at all (decoding only those that do).
fn mentions(payload: &Bytes, request_id: &[u8]) -> bool {
    !request_id.is_empty() && payload.windows(request_id.len()).any(|w| w == request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{CODE_TIMEOUT, Input, Output, Pending, Vote};

    fn at(source: Source, offset: u64, kind: Kind) -> Located {
        Located {
            source,
            chunk: 0,
            offset,
            kind,
        }
    }

    // Proves: a request's history comes out as received, logged, its outputs by time, pending,
    // the reply (the first verdict record: here the PENDING) and the later vote; other
    // requests' records and a resent input copy add nothing.
    #[test]
    fn a_pending_request_then_its_vote() {
        let id = Bytes::from(vec![7u8; 16]);
        let other = Bytes::from(vec![8u8; 16]);
        let input = |rid: &Bytes| {
            Kind::Input(Input {
                request_id: rid.clone(),
                method: "/bank.v1.Bank/Open".into(),
                received_at_ms: 100,
                deadline_ms: 50,
                ..Input::default()
            })
        };
        let output = |replica, code, at_ms| {
            Kind::Output(Output {
                request_id: id.clone(),
                replica,
                code,
                at_ms,
                ..Output::default()
            })
        };
        let records = vec![
            at(Source::Inputs, 32, input(&other)),
            at(Source::Inputs, 64, input(&id)),
            at(Source::Inputs, 96, input(&id)),
            at(Source::Outputs(1), 32, output(1, 0, 300)),
            at(Source::Outputs(0), 32, output(0, CODE_TIMEOUT, 120)),
            at(
                Source::Votes,
                32,
                Kind::Pending(Pending {
                    request_id: id.clone(),
                    deadline_ms: 50,
                    out: vec![1, 2],
                    at_ms: 200,
                    ..Pending::default()
                }),
            ),
            at(
                Source::Votes,
                64,
                Kind::Vote(Vote {
                    request_id: id.clone(),
                    agreeing: vec![1, 2],
                    at_ms: 400,
                    ..Vote::default()
                }),
            ),
            at(Source::Outputs(2), 32, output(2, 0, 350)),
        ];
        let events = assemble(&id, &records);
        let names: Vec<&str> = events.iter().map(|e| e.event).collect();
        assert_eq!(
            names,
            [
                "received", "logged", "output", "pending", "reply", "output", "output", "vote"
            ]
        );
        assert_eq!(
            events[1].offset,
            Some(64),
            "the first copy is the one logged"
        );
        assert_eq!(events[2].status.as_deref(), Some("TIMEOUT"));
        assert_eq!(events[4].status.as_deref(), Some("DeadlineExceeded"));
        assert_eq!((events[5].replica, events[6].replica), (Some(1), Some(2)));
        assert!(assemble(&[9u8; 16], &records).is_empty());
    }
}
