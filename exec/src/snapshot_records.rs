//! SNAPSHOT records: a replica's snapshot split into records that fit its output log
//! ([`snapshot_records`]), and the newest complete snapshot put back together from a replay of
//! that log ([`SnapshotParts`]). Layout: FORMAT.md, "Execution layer records".

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use prost::Message;

use crate::records::{ExecRecord, Kind, Snapshot};

/// The largest SNAPSHOT record payload written (1 MiB), below the log's own bound
/// ([`cairn_client::Appender::payload_bytes_max`], at most 16 MiB): a part is read, held and
/// resent whole, so parts stay moderate whatever the chunk size.
pub const SNAPSHOT_RECORD_BYTES_MAX: usize = 1 << 20;

/// Bytes a SNAPSHOT record adds around its data beyond the encoded record with empty data: the
/// data field's tag and length (at most 1 + 5) and the growth of the record's own length prefix
/// (at most 4).
const DATA_FIELD_OVERHEAD_BYTES: usize = 10;

/// blake3 of a whole snapshot.
pub fn snapshot_digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// A snapshot as the replica took it: the state after its first `inputs` inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenSnapshot {
    /// The replica's index.
    pub replica: u32,
    /// K: the inputs it covers (first copies, in input-log order).
    pub inputs: u64,
    /// The request id of input K.
    pub last_request_id: Bytes,
    /// The snapshot's bytes.
    pub bytes: Bytes,
}

/// `snapshot` as SNAPSHOT records whose payloads are at most `min(payload_bytes_max,
/// SNAPSHOT_RECORD_BYTES_MAX)` bytes each, in part order (one part for an empty snapshot).
/// Fails only if that bound cannot hold a record's fields.
pub fn snapshot_records(
    snapshot: &TakenSnapshot,
    payload_bytes_max: usize,
) -> anyhow::Result<Vec<Snapshot>> {
    let limit = payload_bytes_max.min(SNAPSHOT_RECORD_BYTES_MAX);
    let digest = Bytes::copy_from_slice(&snapshot_digest(&snapshot.bytes));
    let mut record = Snapshot {
        replica: snapshot.replica,
        inputs: snapshot.inputs,
        last_request_id: snapshot.last_request_id.clone(),
        digest,
        total_bytes: snapshot.bytes.len() as u64,
        part: u32::MAX,
        parts: u32::MAX,
        data: Bytes::new(),
    };
    let header = ExecRecord::from(Kind::Snapshot(record.clone())).encoded_len();
    let data_max = limit.saturating_sub(header + DATA_FIELD_OVERHEAD_BYTES);
    anyhow::ensure!(
        data_max > 0,
        "a SNAPSHOT record of at most {limit} bytes cannot hold its {header} bytes of fields"
    );
    let parts = snapshot.bytes.len().div_ceil(data_max).max(1);
    let parts_u32 = u32::try_from(parts)
        .map_err(|_| anyhow::anyhow!("a snapshot of {parts} parts is too large"))?;
    record.parts = parts_u32;
    Ok((0..parts)
        .map(|i| {
            let start = i * data_max;
            let end = (start + data_max).min(snapshot.bytes.len());
            Snapshot {
                part: i as u32,
                data: snapshot.bytes.slice(start..end),
                ..record.clone()
            }
        })
        .collect())
}

/// A snapshot put back together: every part present, the length and blake3 checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledSnapshot {
    /// K: the inputs it covers.
    pub inputs: u64,
    /// The request id of input K.
    pub last_request_id: Bytes,
    /// blake3 of `bytes`.
    pub digest: [u8; 32],
    /// The snapshot's bytes.
    pub bytes: Bytes,
}

/// Why a snapshot found in an output log cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokenSnapshot {
    /// Some parts are not in the log.
    MissingParts {
        /// The inputs it would cover.
        inputs: u64,
        /// Parts present.
        present: u32,
        /// Parts it has.
        parts: u32,
    },
    /// Its parts joined are not the bytes its digest and length name.
    Mismatch {
        /// The inputs it would cover.
        inputs: u64,
        /// What differs, in words.
        what: String,
    },
}

impl std::fmt::Display for BrokenSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokenSnapshot::MissingParts {
                inputs,
                present,
                parts,
            } => write!(
                f,
                "the snapshot after {inputs} inputs has {present} of its {parts} parts"
            ),
            BrokenSnapshot::Mismatch { inputs, what } => {
                write!(f, "the snapshot after {inputs} inputs: {what}")
            }
        }
    }
}

/// One snapshot's parts gathered so far.
#[derive(Debug)]
struct Gathering {
    last_request_id: Bytes,
    digest: Bytes,
    total_bytes: u64,
    parts: u32,
    data: BTreeMap<u32, Bytes>,
}

impl Gathering {
    /// Every part present, joined and checked; `None` while parts are missing.
    fn assemble(&self, inputs: u64) -> Option<Result<AssembledSnapshot, BrokenSnapshot>> {
        if self.data.len() < self.parts as usize {
            return None;
        }
        let mut joined = BytesMut::with_capacity(self.total_bytes.min(1 << 30) as usize);
        for data in self.data.values() {
            joined.extend_from_slice(data);
        }
        let bytes = joined.freeze();
        let mismatch = |what: String| Some(Err(BrokenSnapshot::Mismatch { inputs, what }));
        if bytes.len() as u64 != self.total_bytes {
            return mismatch(format!(
                "its parts hold {} bytes, not {}",
                bytes.len(),
                self.total_bytes
            ));
        }
        let digest = snapshot_digest(&bytes);
        if digest.as_slice() != self.digest.as_ref() {
            return mismatch("blake3 of its parts is not its digest".to_owned());
        }
        Some(Ok(AssembledSnapshot {
            inputs,
            last_request_id: self.last_request_id.clone(),
            digest,
            bytes,
        }))
    }

    fn broken(&self, inputs: u64) -> BrokenSnapshot {
        BrokenSnapshot::MissingParts {
            inputs,
            present: self.data.len() as u32,
            parts: self.parts,
        }
    }
}

/// The SNAPSHOT records of one output log, fed in log order: keeps the newest complete
/// snapshot and any newer ones still missing parts (older incomplete ones are dropped, so
/// memory stays near one or two snapshots however many the log holds).
#[derive(Debug, Default)]
pub struct SnapshotParts {
    /// Snapshots newer than `complete` still missing parts, by (inputs, digest, parts).
    gathering: BTreeMap<(u64, Bytes, u32), Gathering>,
    /// The newest complete snapshot so far.
    complete: Option<AssembledSnapshot>,
    /// Snapshots whose parts are all present but do not match their digest or length.
    mismatched: Vec<BrokenSnapshot>,
}

impl SnapshotParts {
    /// Adds one SNAPSHOT record. A record that contradicts itself (part beyond its count, no
    /// parts, a digest not 32 bytes) is refused with the reason and changes nothing.
    pub fn add(&mut self, record: Snapshot) -> Result<(), String> {
        if record.parts == 0 || record.part >= record.parts || record.digest.len() != 32 {
            return Err(format!(
                "SNAPSHOT record after {} inputs is malformed: part {} of {}, digest of {} bytes",
                record.inputs,
                record.part,
                record.parts,
                record.digest.len()
            ));
        }
        if self
            .complete
            .as_ref()
            .is_some_and(|c| c.inputs >= record.inputs)
        {
            return Ok(());
        }
        let inputs = record.inputs;
        let key = (inputs, record.digest.clone(), record.parts);
        let gathering = self
            .gathering
            .entry(key.clone())
            .or_insert_with(|| Gathering {
                last_request_id: record.last_request_id.clone(),
                digest: record.digest.clone(),
                total_bytes: record.total_bytes,
                parts: record.parts,
                data: BTreeMap::new(),
            });
        gathering.data.entry(record.part).or_insert(record.data);
        match gathering.assemble(inputs) {
            None => {}
            Some(Ok(assembled)) => {
                self.gathering.remove(&key);
                // Older snapshots, complete or not, are of no more use.
                self.gathering.retain(|(k, _, _), _| *k > inputs);
                self.complete = Some(assembled);
            }
            Some(Err(broken)) => {
                self.gathering.remove(&key);
                self.mismatched.push(broken);
            }
        }
        Ok(())
    }

    /// The newest complete snapshot, if any, and every snapshot newer than it that cannot be
    /// used (parts missing, or not matching its digest).
    pub fn newest(self) -> (Option<AssembledSnapshot>, Vec<BrokenSnapshot>) {
        let newest = self.complete.as_ref().map_or(0, |c| c.inputs);
        let mut broken: Vec<BrokenSnapshot> = self
            .mismatched
            .into_iter()
            .filter(|b| match b {
                BrokenSnapshot::MissingParts { inputs, .. }
                | BrokenSnapshot::Mismatch { inputs, .. } => *inputs > newest,
            })
            .collect();
        broken.extend(
            self.gathering
                .iter()
                .map(|((inputs, _, _), g)| g.broken(*inputs)),
        );
        (self.complete, broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(inputs: u64, len: usize) -> TakenSnapshot {
        TakenSnapshot {
            replica: 2,
            inputs,
            last_request_id: Bytes::from(vec![inputs as u8; 16]),
            bytes: Bytes::from(
                (0..len)
                    .map(|i| (i as u64 * 31 + inputs) as u8)
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    fn assembled(t: &TakenSnapshot) -> AssembledSnapshot {
        AssembledSnapshot {
            inputs: t.inputs,
            last_request_id: t.last_request_id.clone(),
            digest: snapshot_digest(&t.bytes),
            bytes: t.bytes.clone(),
        }
    }

    // Proves: a snapshot split under a small record bound takes many parts, each record's
    // payload within the bound, and the parts, fed in any order, reassemble to the same bytes
    // with their digest; an empty snapshot is one part.
    #[test]
    fn parts_split_within_the_bound_and_reassemble() {
        let t = taken(100, 10_000);
        let records = snapshot_records(&t, 300).unwrap();
        assert!(records.len() >= 40, "{} parts", records.len());
        for (i, r) in records.iter().enumerate() {
            let payload = ExecRecord::from(Kind::Snapshot(r.clone())).to_payload();
            assert!(payload.len() <= 300, "{} bytes", payload.len());
            // Every part but the last fills its record to within a few bytes of the bound.
            assert!(
                i + 1 == records.len() || payload.len() > 280,
                "{} bytes",
                payload.len()
            );
            assert_eq!(r.parts as usize, records.len());
        }
        let mut parts = SnapshotParts::default();
        for r in records.iter().rev() {
            parts.add(r.clone()).unwrap();
        }
        assert_eq!(parts.newest(), (Some(assembled(&t)), vec![]));

        let empty = taken(7, 0);
        let records = snapshot_records(&empty, 1 << 20).unwrap();
        assert_eq!(records.len(), 1);
        let mut parts = SnapshotParts::default();
        parts.add(records[0].clone()).unwrap();
        assert_eq!(parts.newest(), (Some(assembled(&empty)), vec![]));

        // A bound too small for the fields is refused, not exceeded.
        assert!(snapshot_records(&t, 50).is_err());
    }

    // Proves: a snapshot with a part missing is not used, and an older complete one is
    // chosen instead, the broken one reported; with no complete one there is none.
    #[test]
    fn a_missing_part_is_refused() {
        let old = taken(100, 5_000);
        let new = taken(200, 5_000);
        let mut new_records = snapshot_records(&new, 1_000).unwrap();
        new_records.remove(3);
        let parts_of_new = new_records.len() as u32 + 1;
        let mut parts = SnapshotParts::default();
        for r in snapshot_records(&old, 1_000).unwrap() {
            parts.add(r).unwrap();
        }
        for r in new_records.clone() {
            parts.add(r).unwrap();
        }
        let (newest, broken) = parts.newest();
        assert_eq!(newest, Some(assembled(&old)));
        assert_eq!(
            broken,
            vec![BrokenSnapshot::MissingParts {
                inputs: 200,
                present: parts_of_new - 1,
                parts: parts_of_new,
            }]
        );

        let mut alone = SnapshotParts::default();
        for r in new_records {
            alone.add(r).unwrap();
        }
        assert_eq!(alone.newest().0, None);
    }

    // Proves: parts whose joined bytes differ from the digest (a part altered) or from the
    // length are refused; a malformed record is refused at once.
    #[test]
    fn a_bad_digest_is_refused() {
        let t = taken(300, 4_000);
        let mut records = snapshot_records(&t, 1_000).unwrap();
        let mut altered = records[1].data.to_vec();
        altered[0] ^= 1;
        records[1].data = Bytes::from(altered);
        let mut parts = SnapshotParts::default();
        for r in records {
            parts.add(r).unwrap();
        }
        let (newest, broken) = parts.newest();
        assert_eq!(newest, None);
        assert!(
            matches!(&broken[..], [BrokenSnapshot::Mismatch { inputs: 300, what }] if what.contains("blake3")),
            "{broken:?}"
        );

        let mut records = snapshot_records(&t, 1_000).unwrap();
        let last = records.len() - 1;
        records[last].data = records[last].data.slice(1..);
        let mut parts = SnapshotParts::default();
        for r in records {
            parts.add(r).unwrap();
        }
        assert!(matches!(
            &parts.newest().1[..],
            [BrokenSnapshot::Mismatch { inputs: 300, .. }]
        ));

        let mut bad = snapshot_records(&t, 1_000).unwrap()[0].clone();
        bad.part = bad.parts;
        assert!(SnapshotParts::default().add(bad).is_err());
    }

    // Proves: of several complete snapshots the newest (most inputs) is chosen, whatever
    // their order in the log.
    #[test]
    fn the_newest_complete_snapshot_wins() {
        let mut parts = SnapshotParts::default();
        for inputs in [300, 100, 200] {
            for r in snapshot_records(&taken(inputs, 2_500), 1_000).unwrap() {
                parts.add(r).unwrap();
            }
        }
        let (newest, broken) = parts.newest();
        assert_eq!(newest, Some(assembled(&taken(300, 2_500))));
        assert!(broken.is_empty());
    }
}
