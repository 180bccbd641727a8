//! [`status`]: a service's replicas, counts and storage, computed from its logs alone (what
//! `cairn exec status` prints).

use std::collections::HashMap;

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};

use crate::records::{ExecRecord, Kind, digest};
use crate::service_logs::ServiceLogs;
use crate::snapshot_records::SnapshotParts;

/// A replica's newest complete snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// K: the inputs it covers.
    pub inputs: u64,
    /// blake3 of its bytes: replicas' snapshots of the same K are equal when their states are.
    pub digest: [u8; 32],
    /// Its size in bytes.
    pub bytes: u64,
}

/// One replica as its output log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its index.
    pub index: u32,
    /// The chunkserver its output log is placed on.
    pub chunkserver: String,
    /// Outputs it appended (distinct requests).
    pub executed: u64,
    /// Its outputs whose digest differs from the request's vote.
    pub dissents: u64,
    /// Its latest voted outputs that differ from the vote, in a row (in output-log order).
    pub dissents_in_a_row: u64,
    /// Inputs logged that it has no output for yet.
    pub lag: u64,
    /// Its CRASH and TIMEOUT outputs: each time its worker was killed or died on an input and a
    /// fresh one rebuilt the state.
    pub worker_recoveries: u64,
    /// `faulty` (at least `replica --faulty-after`'s default, 3, dissents in a row: it rebuilds
    /// its state), `dissenting` (at least one dissent), `behind` (fewer outputs than inputs) or
    /// `ok` (every input executed, no dissent).
    pub state: &'static str,
    /// Its newest complete snapshot, if it has one.
    pub snapshot: Option<SnapshotStatus>,
}

/// Bytes a service's logs take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageBytes {
    /// Every replica file of the input log, on every chunkserver (file bytes, headers included).
    pub inputs_on_disk: u64,
    /// Every replica file of every output log, on every chunkserver.
    pub outputs_on_disk: u64,
    /// The framed bytes of the OUTPUT records of every request, counted once per request (not
    /// once per replica): n replicas at RF 1 store about n × this.
    pub output_records: u64,
    /// The framed bytes of all INPUT records, each counted once.
    pub input_records: u64,
    /// The framed bytes of the SNAPSHOT records of every output log (part of
    /// `outputs_on_disk`, not of `output_records`).
    pub snapshot_records: u64,
    /// Every replica file of the vote log, on every chunkserver.
    pub votes_on_disk: u64,
}

/// A service as its logs show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service's name.
    pub service: String,
    /// Its replicas in index order.
    pub replicas: Vec<ReplicaStatus>,
    /// Distinct inputs logged.
    pub inputs: u64,
    /// Distinct requests voted.
    pub votes: u64,
    /// Dissenting outputs over all replicas.
    pub dissents: u64,
    /// Inputs quarantined now (QUARANTINE records without a later LIFT).
    pub quarantined: u64,
    /// Requests answered DEADLINE_EXCEEDED (PENDING) that have no verdict yet.
    pub pending: u64,
    /// Storage.
    pub bytes: StorageBytes,
}

/// Reads every log of the service and computes its status.
pub async fn status(client: &Client, logs: &ServiceLogs) -> anyhow::Result<ServiceStatus> {
    let n = logs.replica_count(client).await?;
    let mut bytes = StorageBytes::default();
    let mut inputs = 0u64;
    let mut input_ids = std::collections::HashSet::new();
    scan(client, &logs.inputs(), |kind, framed| {
        if let Kind::Input(input) = kind
            && input_ids.insert(input.request_id)
        {
            inputs += 1;
            bytes.input_records += framed;
        }
    })
    .await?;
    let mut agreed: HashMap<Bytes, [u8; 32]> = HashMap::new();
    let mut verdicts: Vec<Kind> = Vec::new();
    let mut pending: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
    scan(client, &logs.votes(), |kind, _| match kind {
        Kind::Vote(vote) => {
            pending.remove(&vote.request_id);
            agreed.insert(
                vote.request_id,
                digest(vote.code, &vote.message, &vote.response),
            );
        }
        Kind::Pending(p) => {
            if !agreed.contains_key(&p.request_id) {
                pending.insert(p.request_id);
            }
        }
        q @ (Kind::Quarantine(_) | Kind::Lift(_)) => {
            if let Kind::Quarantine(q) = &q {
                pending.remove(&q.request_id);
            }
            verdicts.push(q);
        }
        Kind::Input(_) | Kind::Output(_) | Kind::Snapshot(_) => {}
    })
    .await?;
    let quarantined = crate::quarantine::fold(&verdicts).len() as u64;
    let mut replicas = Vec::new();
    let mut dissents_total = 0;
    let placements: HashMap<String, String> = client
        .list_logs(&logs.outputs_prefix())
        .await?
        .into_iter()
        .map(|l| (l.path, l.place_on.unwrap_or_default()))
        .collect();
    let mut counted = std::collections::HashSet::new();
    for i in 0..n {
        let path = logs.output(i);
        let mut seen = std::collections::HashSet::new();
        let (mut executed, mut dissents, mut in_a_row) = (0u64, 0u64, 0u64);
        let mut recoveries = 0u64;
        let mut snapshots = SnapshotParts::default();
        scan(client, &path, |kind, framed| {
            if let Kind::Snapshot(record) = kind {
                bytes.snapshot_records += framed;
                if record.replica == i {
                    // A malformed record is simply not counted as a snapshot.
                    let _ = snapshots.add(record);
                }
            } else if let Kind::Output(output) = kind {
                recoveries += u64::from(crate::records::is_fault(output.code));
                if !seen.insert(output.request_id.clone()) {
                    return;
                }
                executed += 1;
                if counted.insert(output.request_id.clone()) {
                    bytes.output_records += framed;
                }
                let d = digest(output.code, &output.message, &output.response);
                match agreed.get(&output.request_id) {
                    Some(a) if *a != d => {
                        dissents += 1;
                        in_a_row += 1;
                    }
                    Some(_) => in_a_row = 0,
                    None => {}
                }
            }
        })
        .await?;
        bytes.outputs_on_disk += on_disk(client, &path).await?;
        dissents_total += dissents;
        replicas.push(ReplicaStatus {
            index: i,
            chunkserver: placements.get(&path).cloned().unwrap_or_default(),
            executed,
            dissents,
            dissents_in_a_row: in_a_row,
            lag: inputs.saturating_sub(executed),
            worker_recoveries: recoveries,
            state: if in_a_row >= crate::replica::FAULTY_AFTER_DEFAULT {
                "faulty"
            } else if dissents > 0 {
                "dissenting"
            } else if executed < inputs {
                "behind"
            } else {
                "ok"
            },
            snapshot: snapshots.newest().0.map(|s| SnapshotStatus {
                inputs: s.inputs,
                digest: s.digest,
                bytes: s.bytes.len() as u64,
            }),
        });
    }
    bytes.inputs_on_disk = on_disk(client, &logs.inputs()).await?;
    bytes.votes_on_disk = on_disk(client, &logs.votes()).await?;
    Ok(ServiceStatus {
        service: logs.service().to_owned(),
        replicas,
        inputs,
        votes: agreed.len() as u64,
        dissents: dissents_total,
        quarantined,
        pending: pending.len() as u64,
        bytes,
    })
}

/// Replays `path`, handing each execution-layer record and its framed size to `each`.
async fn scan(client: &Client, path: &str, mut each: impl FnMut(Kind, u64)) -> anyhow::Result<()> {
    let mut replay = client.replay(path, ReplayOptions::default()).await?;
    while let Some(event) = replay.next().await {
        if let ReplayEvent::Record { payload, .. } = event?
            && let Some(kind) = ExecRecord::from_payload(&payload)
        {
            each(kind, cairn_record::encoded_len(payload.len()) as u64);
        }
    }
    Ok(())
}

/// The bytes of every replica file of `path` on every chunkserver, as the chunkservers last
/// reported them (file length, header included).
async fn on_disk(client: &Client, path: &str) -> anyhow::Result<u64> {
    let replicas = client.list_replicas(path).await?;
    Ok(replicas
        .chunks
        .iter()
        .flat_map(|c| c.replicas.iter())
        .map(|r| u64::from(r.length))
        .sum())
}
