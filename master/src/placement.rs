//! Chunk placement: which chunkservers hold a new chunk.

use crate::error::Error;

/// A live chunkserver that could take a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) address: String,
    /// Replicas it holds now.
    pub(crate) replicas: usize,
    /// It answered during the seal that asks for this chunk.
    pub(crate) preferred: bool,
    /// Random tie-breaker, so equal servers take turns being primary.
    pub(crate) tie: u64,
}

/// Picks `replication` distinct chunkservers, least used first, then those that answered the
/// last seal, then by the random tie-breaker. The first is the chunk's fixed primary.
pub(crate) fn place(
    mut candidates: Vec<Candidate>,
    replication: usize,
) -> Result<Vec<String>, Error> {
    candidates.sort_by(|a, b| a.address.cmp(&b.address));
    candidates.dedup_by(|a, b| a.address == b.address);
    if candidates.len() < replication {
        return Err(Error::NotEnoughChunkservers {
            need: replication,
            have: candidates.len(),
        });
    }
    candidates.sort_by_key(|c| (c.replicas, !c.preferred, c.tie));
    Ok(candidates
        .into_iter()
        .take(replication)
        .map(|c| c.address)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(address: &str, replicas: usize, preferred: bool, tie: u64) -> Candidate {
        Candidate {
            address: address.to_owned(),
            replicas,
            preferred,
            tie,
        }
    }

    // Least used first; among equals, those that answered the seal; the primary is first.
    #[test]
    fn least_used_first_then_preferred() {
        let got = place(
            vec![
                c("a", 5, true, 0),
                c("b", 1, false, 9),
                c("c", 1, true, 9),
                c("d", 0, false, 9),
            ],
            3,
        )
        .unwrap();
        assert_eq!(got, vec!["d", "c", "b"]);
    }

    // Too few distinct live chunkservers: UNAVAILABLE naming both counts.
    #[test]
    fn too_few_names_both_counts() {
        let err = place(
            vec![
                c("a", 0, false, 0),
                c("a", 0, false, 1),
                c("b", 0, false, 0),
            ],
            3,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "need 3 live chunkservers, have 2");
    }

    // The tie-breaker spreads primaries over equal servers.
    #[test]
    fn ties_break_by_the_random_key() {
        let got = place(
            vec![
                c("a", 1, false, 7),
                c("b", 1, false, 3),
                c("c", 1, false, 5),
            ],
            3,
        )
        .unwrap();
        assert_eq!(got, vec!["b", "c", "a"]);
    }
}
