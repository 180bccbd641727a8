//! Test-only fault injection (cargo feature `test-faults`): a replica that answers a share of
//! its requests wrongly (`replica --test-corrupt-outputs RATE`), and the replica's index in its
//! worker's environment (for test inputs that break some replicas only). Without the feature
//! no reply is changed and the worker gets no such variable.

use crate::records::WorkerReply;

/// Environment variable a replica sets for its worker, with the feature `test-faults` only: its
/// index, so that a test input can break some replicas and not others (a nondeterministic
/// crash, which the determinism contract otherwise rules out).
pub const WORKER_REPLICA_ENV: &str = "CAIRN_EXEC_TEST_REPLICA";

/// The environment a replica's worker gets: [`WORKER_REPLICA_ENV`] with the feature, nothing
/// without it.
pub fn worker_env(index: u32) -> Vec<(&'static str, String)> {
    if cfg!(feature = "test-faults") {
        vec![(WORKER_REPLICA_ENV, index.to_string())]
    } else {
        Vec::new()
    }
}

/// Whether a replica corrupting a share `rate` (0.0..=1.0) of its outputs corrupts the one of
/// `request_id`: decided by the request id alone, so a rerun decides the same. Never without
/// the feature `test-faults`.
pub fn corrupts(rate: f64, request_id: &[u8]) -> bool {
    if !cfg!(feature = "test-faults") || rate <= 0.0 {
        return false;
    }
    let hash = blake3::hash(request_id);
    let draw = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    (draw as f64) < rate * (u64::MAX as f64)
}

/// `reply` made wrong: one bit of its response flipped, or its status message altered when it
/// has no response (so its digest differs).
pub fn make_wrong(reply: &mut WorkerReply) {
    if reply.response.is_empty() {
        reply.message.push_str(" [wrong on purpose]");
    } else {
        let mut bytes = reply.response.to_vec();
        bytes[0] ^= 0x01;
        reply.response = bytes.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: the share of corrupted outputs follows the rate (all, none, about half) and a
    // request's fate does not change between runs; a corrupted reply's digest differs.
    #[test]
    fn corruption_follows_the_rate_and_changes_the_digest() {
        let ids: Vec<[u8; 16]> = (0..1000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id
            })
            .collect();
        let share = |rate| ids.iter().filter(|id| corrupts(rate, &id[..])).count();
        if cfg!(feature = "test-faults") {
            assert_eq!(share(1.0), 1000);
            assert!((350..650).contains(&share(0.5)), "{}", share(0.5));
        } else {
            assert_eq!(share(1.0), 0, "never without the feature");
        }
        assert_eq!(share(0.0), 0);
        for reply in [
            WorkerReply {
                response: bytes::Bytes::from_static(b"ok"),
                ..WorkerReply::default()
            },
            WorkerReply {
                code: 5,
                message: "not found".into(),
                ..WorkerReply::default()
            },
        ] {
            let mut wrong = reply.clone();
            make_wrong(&mut wrong);
            assert_ne!(wrong.digest(), reply.digest());
        }
    }
}
