//! The seal decision: from the replicas' fence answers to the sealed length, the replicas that
//! keep the chunk and the writer marks carried to the next chunk. Pure; `core/seal.rs` does the
//! RPCs.

use cairn_record::ChunkOffset;

use crate::meta::WriterMark;

/// One replica's answer to `Fence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FenceOutcome {
    /// Fenced: it refuses the old version and reported its durable length.
    Fenced {
        address: String,
        length: ChunkOffset,
        /// It was already sealed (a seal that the master did not get to log).
        sealed: bool,
        /// Its writers' last records in `[32, marks_through)`, most recently active first.
        marks: Vec<WriterMark>,
        /// The commit offset it knows: a prefix every replica holds durably.
        marks_through: ChunkOffset,
        /// Set when it is the chunk's primary in its role (never restarted): its commit
        /// offset, exactly the acknowledged extent of the chunk.
        primary_commit: Option<ChunkOffset>,
    },
    /// The chunkserver answered that it has no such replica.
    Absent { address: String },
    /// No usable answer (unreachable, timeout, error).
    Failed { address: String },
}

/// A replica that answered its fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FencedReplica<'a> {
    pub(crate) address: &'a String,
    /// Its durable length.
    pub(crate) length: ChunkOffset,
    /// It was already sealed.
    pub(crate) sealed: bool,
}

/// The fenced replicas among `outcomes`.
pub(crate) fn fenced(outcomes: &[FenceOutcome]) -> Vec<FencedReplica<'_>> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            FenceOutcome::Fenced {
                address,
                length,
                sealed,
                ..
            } => Some(FencedReplica {
                address,
                length: *length,
                sealed: *sealed,
            }),
            _ => None,
        })
        .collect()
}

/// What to do after fencing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SealPlan {
    /// Seal at `length` on `replicas`; `marks` are carried to the next chunk (see
    /// [`carried_marks`]).
    Seal {
        length: ChunkOffset,
        replicas: Vec<String>,
        marks: Vec<WriterMark>,
    },
    /// Nothing was ever acknowledged in the chunk: every replica said it has no such chunk, or
    /// one it was opened on is failed with nothing past its header (see [`plan`]).
    Abandon,
    /// Nobody answered: retry later.
    Unavailable,
}

/// Decides a seal.
///
/// Every acknowledged record was durable on every replica when it was acknowledged, and every
/// replica holds a prefix of one byte stream (each takes bytes only at its exact length, from
/// the one primary). So the *longest* fenced length covers every acknowledged record even if
/// some replica lost part of its tail since (a truncated file, a power cut that tore it), and
/// bytes past the shortest were at most unacknowledged records, which readers may see once
/// (appends are at least once). Sealing at the shortest would let one damaged replica shorten
/// the chunk and lose acknowledged records. If a replica is already sealed, an earlier seal
/// chose its length, and it is kept so replicas never disagree. Replicas shorter than the
/// sealed length are left out here; the repair loop brings them up to it (`Replicate`).
///
/// When the primary answered in its role, its commit offset is the sealed length instead (if a
/// fenced replica holds it): the primary acknowledges a record only once its commit offset
/// covers it, and every replica holds the bytes below it, so that offset is exactly the
/// acknowledged extent. Bytes past it sit on fewer replicas than the chunk has (a primary whose
/// forwards failed holds records no secondary got); sealed in, they were readable from one
/// replica until the repair copied them, and a reader could see them and then, that replica
/// lost, see them gone (the simulator's seed 12245). Readers of the open chunk were never
/// served past the commit offset, so nothing they read is cut.
///
/// With no replica fenced, the chunk is dropped (`Abandon`) when it provably holds no
/// acknowledged record: every replica answered that it has no such chunk (the master died
/// between logging the allocation and creating the replicas), or `proven_empty`, which the
/// caller sets when a replica the chunk was opened on is *failed* (an I/O error stopped it; it
/// takes no byte more) with nothing past its header: an acknowledgement needs the record durable
/// on every replica the chunk was opened on, that one included. Otherwise nobody usable answered
/// and the seal is retried later.
pub(crate) fn plan(outcomes: &[FenceOutcome], proven_empty: bool) -> SealPlan {
    let fenced = fenced(outcomes);
    if fenced.is_empty() {
        let all_absent = !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| matches!(o, FenceOutcome::Absent { .. }));
        return if all_absent || proven_empty {
            SealPlan::Abandon
        } else {
            SealPlan::Unavailable
        };
    }
    let already_sealed = fenced.iter().filter(|f| f.sealed).min_by_key(|f| f.length);
    let longest = fenced
        .iter()
        .map(|f| f.length)
        .max()
        .expect("fenced is not empty");
    let primary_commit = outcomes
        .iter()
        .find_map(|o| match o {
            FenceOutcome::Fenced { primary_commit, .. } => *primary_commit,
            _ => None,
        })
        .filter(|&c| c <= longest);
    let length = match already_sealed {
        Some(sealed) => sealed.length,
        None => primary_commit.unwrap_or(longest),
    };
    SealPlan::Seal {
        length,
        replicas: fenced
            .iter()
            .filter(|f| f.length >= length)
            .map(|f| f.address.clone())
            .collect(),
        marks: carried_marks(outcomes, length),
    }
}

/// The writer marks carried to the next chunk: those of the fenced replica that knows the
/// highest commit offset (at most the sealed `length`).
///
/// The next primary answers a resent record "already stored" from these marks, so they may
/// name only records durable on every replica: a replica's marks cover `[32, its known commit
/// offset)`, which every replica held durably when that offset was published. The longest
/// replica's own marks would not do: with its forwards hanging, a primary holds records no
/// other replica has, never acknowledged; carried on, they would be "already stored" on one
/// disk. Records above the chosen offset that a client resends are stored again in the next
/// chunk, and replay drops the copies (appends are at least once).
pub(crate) fn carried_marks(outcomes: &[FenceOutcome], length: ChunkOffset) -> Vec<WriterMark> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            FenceOutcome::Fenced {
                marks,
                marks_through,
                ..
            } if *marks_through <= length => Some((*marks_through, marks)),
            _ => None,
        })
        .max_by_key(|(through, _)| *through)
        .map(|(_, marks)| marks.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(address: &str, length: u64, sealed: bool, mark: u64) -> FenceOutcome {
        fenced_through(address, length, sealed, mark, length)
    }

    fn fenced_through(
        address: &str,
        length: u64,
        sealed: bool,
        mark: u64,
        marks_through: u64,
    ) -> FenceOutcome {
        FenceOutcome::Fenced {
            address: address.to_owned(),
            length: ChunkOffset(length),
            sealed,
            marks: vec![WriterMark {
                writer: cairn_record::WriterId(1),
                sequence: mark,
                frame_crc: 0,
            }],
            marks_through: ChunkOffset(marks_through),
            primary_commit: None,
        }
    }

    // The sealed length is the longest durable length (a replica that lost part of its tail
    // cannot shorten the chunk); its replica's marks are carried; the shorter replica and an
    // unreachable one are left out for the repair loop.
    #[test]
    fn longest_length_wins_and_gives_the_marks() {
        let plan = plan(
            &[
                fenced("a", 4096, false, 30),
                fenced("b", 1000, false, 10),
                fenced("d", 4096, false, 30),
                FenceOutcome::Failed {
                    address: "c".into(),
                },
            ],
            false,
        );
        assert_eq!(
            plan,
            SealPlan::Seal {
                length: ChunkOffset(4096),
                replicas: vec!["a".into(), "d".into()],
                marks: vec![WriterMark {
                    writer: cairn_record::WriterId(1),
                    sequence: 30,
                    frame_crc: 0,
                }],
            }
        );
    }

    // Proves (simulator seed 12245): the primary answering in its role seals the chunk at its
    // commit offset, not at its own longer length: the bytes past it (forwards failed) are on
    // that one replica only and were never acknowledged. The marks come from that prefix. An
    // earlier seal still fixes the length, and a commit offset no fenced replica reaches (all of
    // them damaged) falls back to the longest.
    #[test]
    fn the_primarys_commit_offset_is_the_sealed_length() {
        let as_primary = |mut o: FenceOutcome, commit: u64| {
            if let FenceOutcome::Fenced { primary_commit, .. } = &mut o {
                *primary_commit = Some(ChunkOffset(commit));
            }
            o
        };
        let primary = |commit| as_primary(fenced_through("p", 8320, false, 9, 32), commit);
        let short = fenced("s", 32, false, 0);
        let SealPlan::Seal {
            length, replicas, ..
        } = plan(&[primary(32), short.clone()], false)
        else {
            panic!("expected a seal");
        };
        assert_eq!(length, ChunkOffset(32));
        assert_eq!(replicas, vec!["p".to_owned(), "s".to_owned()]);

        let SealPlan::Seal { length, .. } = plan(&[primary(32), fenced("t", 4000, true, 1)], false)
        else {
            panic!("expected a seal");
        };
        assert_eq!(
            length,
            ChunkOffset(4000),
            "an earlier seal fixes the length"
        );

        let damaged = as_primary(fenced_through("p", 100, false, 1, 32), 9000);
        let SealPlan::Seal { length, .. } = plan(&[damaged, short], false) else {
            panic!("expected a seal");
        };
        assert_eq!(
            length,
            ChunkOffset(100),
            "a commit offset nobody holds: the longest"
        );
    }

    // A replica sealed by an earlier, interrupted seal fixes the length; shorter replicas are
    // stale and left out.
    #[test]
    fn an_earlier_seal_fixes_the_length() {
        let SealPlan::Seal {
            length, replicas, ..
        } = plan(
            &[
                fenced("a", 800, false, 1),
                fenced("b", 2000, true, 2),
                fenced("c", 3000, false, 3),
            ],
            false,
        )
        else {
            panic!("expected a seal");
        };
        assert_eq!(length, ChunkOffset(2000));
        assert_eq!(replicas, vec!["b".to_owned(), "c".to_owned()]);
    }

    // Proves: nobody answered: retry. Everybody said "absent": the chunk never held anything.
    // A failed answer beside absent ones is a retry, unless the caller proved the chunk empty
    // (a replica it was opened on failed with nothing past its header), which drops it; and a
    // fenced replica is sealed whatever the proof says.
    #[test]
    fn nobody_or_absent_or_proven_empty() {
        let failed = FenceOutcome::Failed {
            address: "a".into(),
        };
        let absent = FenceOutcome::Absent {
            address: "b".into(),
        };
        assert_eq!(plan(&[], false), SealPlan::Unavailable);
        assert_eq!(
            plan(&[failed.clone(), absent.clone()], false),
            SealPlan::Unavailable
        );
        assert_eq!(
            plan(&[absent.clone(), absent.clone()], false),
            SealPlan::Abandon
        );
        assert_eq!(
            plan(&[failed.clone(), absent.clone()], true),
            SealPlan::Abandon
        );
        assert!(matches!(
            plan(&[failed, absent, fenced("c", 32, false, 0)], true),
            SealPlan::Seal {
                length: ChunkOffset(32),
                ..
            }
        ));
    }

    // Proves (issue 8 item 1, marks): the marks carried on come from the replica that knows the
    // highest commit offset, not from the longest replica. Here the primary ("p") holds x1, x2
    // (marks up to sequence 5) that its paused secondaries never got, and its own commit offset
    // stops below them: its marks cover only what every replica held (sequence 3). A replica
    // claiming a commit offset past the sealed length is not believed.
    #[test]
    fn marks_come_from_the_highest_known_commit_offset() {
        let outcomes = [
            fenced_through("p", 4096, false, 3, 1000),
            fenced_through("s", 1000, false, 2, 800),
        ];
        assert_eq!(carried_marks(&outcomes, ChunkOffset(4096))[0].sequence, 3);
        let bogus = [
            fenced_through("p", 4096, false, 3, 1000),
            fenced_through("s", 1000, false, 9, 9000),
        ];
        assert_eq!(carried_marks(&bogus, ChunkOffset(4096))[0].sequence, 3);
        assert!(carried_marks(&[], ChunkOffset(4096)).is_empty());
    }
}
