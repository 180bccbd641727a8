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
    /// Free bytes it last reported; `None` if unknown.
    pub(crate) free_bytes: Option<u64>,
}

/// Picks `replication` distinct chunkservers, or as many as there are but at least
/// `min_replicas`: least used first, then those that answered the last seal, then by the random
/// tie-breaker. The first is the chunk's fixed primary. Chunkservers that reported fewer than
/// `need_free` free bytes (the high-watermark: a chunk's capacity plus a margin) get no new
/// chunk.
pub(crate) fn place(
    mut candidates: Vec<Candidate>,
    replication: usize,
    min_replicas: usize,
    need_free: u64,
) -> Result<Vec<String>, Error> {
    let need = min_replicas.min(replication);
    candidates.sort_by(|a, b| a.address.cmp(&b.address));
    candidates.dedup_by(|a, b| a.address == b.address);
    let live = candidates.len();
    candidates.retain(|c| c.free_bytes.is_none_or(|f| f >= need_free));
    if candidates.len() < need && candidates.len() < live {
        return Err(Error::NotEnoughRoom {
            need,
            have: candidates.len(),
            full: live - candidates.len(),
            need_free,
        });
    }
    if candidates.len() < need {
        return Err(Error::NotEnoughChunkservers {
            need,
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

/// [`place`] for a log placed on `address` (`CreateLogRequest.place_on`): `address` is the
/// first (the primary) and the other replicas are placed as usual among the other candidates.
/// If `address` is not a candidate (not live, or left out after it failed) or is past the
/// high-watermark, `PlacementUnavailable`: the chunk is never placed elsewhere instead.
pub(crate) fn place_on(
    path: &str,
    address: &str,
    candidates: Vec<Candidate>,
    replication: usize,
    min_replicas: usize,
    need_free: u64,
) -> Result<Vec<String>, Error> {
    let unavailable = |reason: String| Error::PlacementUnavailable {
        path: path.to_owned(),
        address: address.to_owned(),
        reason,
    };
    let (mine, others): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|c| c.address == address);
    let Some(me) = mine.first() else {
        return Err(unavailable("it is not live".to_owned()));
    };
    if let Some(free) = me.free_bytes.filter(|&f| f < need_free) {
        return Err(unavailable(format!(
            "it has {free} free bytes, less than {need_free}"
        )));
    }
    let mut chosen = vec![address.to_owned()];
    if replication > 1 {
        chosen.extend(place(
            others,
            replication - 1,
            min_replicas.saturating_sub(1),
            need_free,
        )?);
    }
    Ok(chosen)
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
            free_bytes: None,
        }
    }

    fn with_free(mut c: Candidate, free: u64) -> Candidate {
        c.free_bytes = Some(free);
        c
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
            3,
            100,
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
            3,
            100,
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
            3,
            100,
        )
        .unwrap();
        assert_eq!(got, vec!["b", "c", "a"]);
    }

    // Servers below the high-watermark get no new chunk, even when least used; unknown free
    // space is not held against a server.
    #[test]
    fn servers_below_the_watermark_are_skipped() {
        let got = place(
            vec![
                with_free(c("a", 0, true, 0), 99),
                with_free(c("b", 3, false, 0), 100),
                c("c", 2, false, 0),
                with_free(c("d", 1, false, 0), 1 << 40),
            ],
            3,
            3,
            100,
        )
        .unwrap();
        assert_eq!(got, vec!["d", "c", "b"]);
    }

    // Too few servers with room: UNAVAILABLE naming the watermark and how many are full.
    #[test]
    fn too_few_with_room_says_they_are_full() {
        let err = place(
            vec![
                with_free(c("a", 0, false, 0), 10),
                with_free(c("b", 0, false, 0), 10),
                c("c", 0, false, 0),
            ],
            2,
            2,
            100,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "need 2 live chunkservers with at least 100 free bytes, have 1 (2 more are too full)"
        );
    }

    // A placed log: its chunkserver first even when busiest, only it at replication 1, the
    // others placed as usual; not live or too full fails rather than placing elsewhere.
    #[test]
    fn a_placed_log_goes_to_its_chunkserver_or_nowhere() {
        let servers = vec![
            c("a", 0, false, 0),
            c("b", 9, false, 0),
            c("c", 1, false, 0),
        ];
        assert_eq!(
            place_on("/l", "b", servers.clone(), 1, 1, 100).unwrap(),
            vec!["b"]
        );
        assert_eq!(
            place_on("/l", "b", servers.clone(), 3, 3, 100).unwrap(),
            vec!["b", "a", "c"]
        );
        let err = place_on("/l", "d", servers.clone(), 1, 1, 100).unwrap_err();
        assert_eq!(
            err.to_string(),
            "log /l is placed on chunkserver d, which cannot take a chunk now: it is not live"
        );
        let full = vec![with_free(c("b", 0, false, 0), 10), c("a", 0, false, 0)];
        let err = place_on("/l", "b", full, 1, 1, 100).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("it has 10 free bytes, less than 100"),
            "{err}"
        );
    }

    // With a minimum below the factor: as many as are live up to the factor, at least the
    // minimum; fewer than the minimum names the minimum.
    #[test]
    fn a_minimum_opens_on_fewer_live_servers() {
        let two = vec![c("a", 0, false, 0), c("b", 1, false, 0)];
        assert_eq!(place(two.clone(), 3, 2, 100).unwrap(), vec!["a", "b"]);
        let four = vec![
            c("a", 0, false, 0),
            c("b", 1, false, 0),
            c("c", 2, false, 0),
            c("d", 3, false, 0),
        ];
        assert_eq!(place(four, 3, 2, 100).unwrap(), vec!["a", "b", "c"]);
        let err = place(two[..1].to_vec(), 3, 2, 100).unwrap_err();
        assert_eq!(err.to_string(), "need 2 live chunkservers, have 1");
    }
}
