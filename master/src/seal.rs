//! The seal decision: from the replicas' fence answers to the sealed length, the replicas that
//! keep the chunk and the writer marks carried to the next chunk. Pure; `core.rs` does the RPCs.

use crate::meta::WriterMark;

/// One replica's answer to `Fence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FenceOutcome {
    /// Fenced: it refuses the old version and reported its durable length.
    Fenced {
        address: String,
        length: u64,
        /// It was already sealed (a seal that the master did not get to log).
        sealed: bool,
        marks: Vec<WriterMark>,
    },
    /// The chunkserver answered that it has no such replica.
    Absent { address: String },
    /// No usable answer (unreachable, timeout, error).
    Failed { address: String },
}

/// What to do after fencing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SealPlan {
    /// Seal at `length` on `replicas`; `marks` come from the replica that holds exactly the
    /// sealed bytes.
    Seal {
        length: u64,
        replicas: Vec<String>,
        marks: Vec<WriterMark>,
    },
    /// Every replica said it has no such chunk: nothing was ever acknowledged in it.
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
pub(crate) fn plan(outcomes: &[FenceOutcome]) -> SealPlan {
    let fenced: Vec<(&String, u64, bool, &Vec<WriterMark>)> = outcomes
        .iter()
        .filter_map(|o| match o {
            FenceOutcome::Fenced {
                address,
                length,
                sealed,
                marks,
            } => Some((address, *length, *sealed, marks)),
            _ => None,
        })
        .collect();
    if fenced.is_empty() {
        let all_absent = !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| matches!(o, FenceOutcome::Absent { .. }));
        return if all_absent {
            SealPlan::Abandon
        } else {
            SealPlan::Unavailable
        };
    }
    let already_sealed = fenced.iter().filter(|f| f.2).min_by_key(|f| f.1);
    let source = already_sealed.unwrap_or_else(|| {
        fenced
            .iter()
            .max_by_key(|f| f.1)
            .expect("fenced is not empty")
    });
    let length = source.1;
    SealPlan::Seal {
        length,
        replicas: fenced
            .iter()
            .filter(|f| f.1 >= length)
            .map(|f| f.0.clone())
            .collect(),
        marks: source.3.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fenced(address: &str, length: u64, sealed: bool, mark: u64) -> FenceOutcome {
        FenceOutcome::Fenced {
            address: address.to_owned(),
            length,
            sealed,
            marks: vec![WriterMark {
                writer: 1,
                sequence: mark,
            }],
        }
    }

    // The sealed length is the longest durable length (a replica that lost part of its tail
    // cannot shorten the chunk); its replica's marks are carried; the shorter replica and an
    // unreachable one are left out for the repair loop.
    #[test]
    fn longest_length_wins_and_gives_the_marks() {
        let plan = plan(&[
            fenced("a", 4096, false, 30),
            fenced("b", 1000, false, 10),
            fenced("d", 4096, false, 30),
            FenceOutcome::Failed {
                address: "c".into(),
            },
        ]);
        assert_eq!(
            plan,
            SealPlan::Seal {
                length: 4096,
                replicas: vec!["a".into(), "d".into()],
                marks: vec![WriterMark {
                    writer: 1,
                    sequence: 30
                }],
            }
        );
    }

    // A replica sealed by an earlier, interrupted seal fixes the length; shorter replicas are
    // stale and left out.
    #[test]
    fn an_earlier_seal_fixes_the_length() {
        let SealPlan::Seal {
            length, replicas, ..
        } = plan(&[
            fenced("a", 800, false, 1),
            fenced("b", 2000, true, 2),
            fenced("c", 3000, false, 3),
        ])
        else {
            panic!("expected a seal");
        };
        assert_eq!(length, 2000);
        assert_eq!(replicas, vec!["b".to_owned(), "c".to_owned()]);
    }

    // Nobody answered: retry. Everybody said "absent": the chunk never held anything.
    #[test]
    fn nobody_or_absent() {
        let failed = FenceOutcome::Failed {
            address: "a".into(),
        };
        let absent = FenceOutcome::Absent {
            address: "b".into(),
        };
        assert_eq!(plan(&[]), SealPlan::Unavailable);
        assert_eq!(
            plan(&[failed.clone(), absent.clone()]),
            SealPlan::Unavailable
        );
        assert_eq!(plan(&[absent.clone(), absent]), SealPlan::Abandon);
    }
}
