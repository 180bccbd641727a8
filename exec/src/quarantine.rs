//! Quarantined inputs: the fingerprints a service's vote log holds QUARANTINE records for and
//! no later LIFT (what `cairn exec quarantine SERVICE` lists), and lifting one.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions};

use crate::records::{ExecRecord, Kind, Lift, Quarantine, hex, now_ms};
use crate::service_logs::ServiceLogs;

/// The quarantined fingerprints after `records`, in log order: a QUARANTINE adds its
/// fingerprint (a later one of the same fingerprint replaces it), a LIFT removes it.
pub fn fold<'a>(records: impl IntoIterator<Item = &'a Kind>) -> BTreeMap<Bytes, Quarantine> {
    let mut quarantined = BTreeMap::new();
    for kind in records {
        match kind {
            Kind::Quarantine(q) => {
                quarantined.insert(q.fingerprint.clone(), q.clone());
            }
            Kind::Lift(lift) => {
                quarantined.remove(&lift.fingerprint);
            }
            _ => {}
        }
    }
    quarantined
}

/// The service's quarantined inputs, from one replay of its vote log.
pub async fn list(client: &Client, logs: &ServiceLogs) -> anyhow::Result<Vec<Quarantine>> {
    let mut replay = client
        .replay(&logs.votes(), ReplayOptions::default())
        .await?;
    let mut records = Vec::new();
    while let Some(event) = replay.next().await {
        if let ReplayEvent::Record { payload, .. } = event?
            && let Some(kind @ (Kind::Quarantine(_) | Kind::Lift(_))) =
                ExecRecord::from_payload(&payload)
        {
            records.push(kind);
        }
    }
    Ok(fold(&records).into_values().collect())
}

/// Lifts the quarantine of `fingerprint` (hex): appends a LIFT record with `reason` to the vote
/// log, and returns the QUARANTINE it lifts. Front doors refuse the fingerprint no more once
/// they read it (they follow the vote log); an error if it is not quarantined.
pub async fn lift(
    client: &Client,
    logs: &ServiceLogs,
    fingerprint: &str,
    reason: &str,
) -> anyhow::Result<Quarantine> {
    let bytes = crate::records::from_hex(fingerprint)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| anyhow::anyhow!("{fingerprint:?} is not a fingerprint (64 hex digits)"))?;
    let lifted = list(client, logs)
        .await?
        .into_iter()
        .find(|q| q.fingerprint.as_ref() == bytes.as_slice())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "fingerprint {} is not quarantined in service {}",
                hex(&bytes),
                logs.service()
            )
        })?;
    let record = ExecRecord::from(Kind::Lift(Lift {
        fingerprint: Bytes::from(bytes),
        at_ms: now_ms(),
        reason: reason.to_owned(),
    }));
    let appender = client.appender(&logs.votes()).await?;
    appender.append(record.to_payload()).await?;
    Ok(lifted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantine(fp: u8, request: u8) -> Kind {
        Kind::Quarantine(Quarantine {
            request_id: Bytes::from(vec![request; 16]),
            fingerprint: Bytes::from(vec![fp; 32]),
            ..Quarantine::default()
        })
    }

    fn lift(fp: u8) -> Kind {
        Kind::Lift(Lift {
            fingerprint: Bytes::from(vec![fp; 32]),
            ..Lift::default()
        })
    }

    // Proves: a LIFT removes only its own fingerprint, a quarantine after a lift holds again,
    // and other records change nothing.
    #[test]
    fn lifts_undo_only_their_fingerprint() {
        let records = [
            quarantine(1, 10),
            quarantine(2, 20),
            Kind::Lift(Lift::default()),
            lift(1),
            quarantine(1, 11),
            lift(2),
            Kind::Vote(crate::records::Vote::default()),
        ];
        let q = fold(&records);
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[&Bytes::from(vec![1u8; 32])].request_id,
            Bytes::from(vec![11u8; 16])
        );
        assert!(fold(&records[..3]).len() == 2);
    }
}
