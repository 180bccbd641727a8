//! The vote: one request's outputs from n = 2f+1 replicas, agreed once f+1 digests are equal,
//! or quarantined once f+1 replicas crashed or timed out on it (whichever way each broke).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::records::{Dissent, Output, Quarantine, ReplicaOutcome, Vote, digest, is_fault};

/// The agreed outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The request.
    pub request_id: Bytes,
    /// The agreed digest.
    pub digest: [u8; 32],
    /// gRPC status code, 0 = OK.
    pub code: u32,
    /// gRPC status message.
    pub message: String,
    /// Response message bytes.
    pub response: Bytes,
    /// Replicas that output the agreed digest, ascending.
    pub agreeing: Vec<u32>,
    /// Replicas whose output was in and differed, with their digests.
    pub dissenting: Vec<(u32, [u8; 32])>,
    /// f+1 replicas crashed or timed out (`agreeing` names them; `code` is the fault of the
    /// output that completed the quorum): the input is a query of death.
    pub quarantined: bool,
}

impl Verdict {
    /// The VOTE record of this verdict.
    pub fn to_vote(&self, idempotency_key: &str) -> Vote {
        Vote {
            request_id: self.request_id.clone(),
            digest: Bytes::copy_from_slice(&self.digest),
            agreeing: self.agreeing.clone(),
            dissenting: self
                .dissenting
                .iter()
                .map(|(replica, d)| Dissent {
                    replica: *replica,
                    digest: Bytes::copy_from_slice(d),
                })
                .collect(),
            code: self.code,
            message: self.message.clone(),
            response: self.response.clone(),
            idempotency_key: idempotency_key.to_owned(),
            at_ms: crate::records::now_ms(),
        }
    }

    /// The verdict a VOTE record holds.
    pub fn from_vote(vote: &Vote) -> Verdict {
        Verdict {
            request_id: vote.request_id.clone(),
            digest: digest(vote.code, &vote.message, &vote.response),
            code: vote.code,
            message: vote.message.clone(),
            response: vote.response.clone(),
            agreeing: vote.agreeing.clone(),
            dissenting: vote
                .dissenting
                .iter()
                .map(|d| (d.replica, to_digest(&d.digest)))
                .collect(),
            quarantined: false,
        }
    }
}

impl Verdict {
    /// The QUARANTINE record of this verdict (`quarantined`), naming every output in `tally`.
    pub fn to_quarantine(
        &self,
        fingerprint: &[u8],
        method: &str,
        tally: &Tally,
        idempotency_key: &str,
    ) -> Quarantine {
        Quarantine {
            request_id: self.request_id.clone(),
            fingerprint: Bytes::copy_from_slice(fingerprint),
            method: method.to_owned(),
            outcomes: tally.outcomes(),
            idempotency_key: idempotency_key.to_owned(),
            at_ms: crate::records::now_ms(),
        }
    }

    /// The verdict a QUARANTINE record holds: the fault of its first crashed or timed-out
    /// replica.
    pub fn from_quarantine(q: &Quarantine) -> Verdict {
        let faults: Vec<&ReplicaOutcome> = q.outcomes.iter().filter(|o| is_fault(o.code)).collect();
        let code = faults
            .first()
            .map_or(crate::records::CODE_CRASH, |o| o.code);
        Verdict {
            request_id: q.request_id.clone(),
            digest: digest(code, "", b""),
            code,
            message: String::new(),
            response: Bytes::new(),
            agreeing: faults.iter().map(|o| o.replica).collect(),
            dissenting: q
                .outcomes
                .iter()
                .filter(|o| !is_fault(o.code))
                .map(|o| (o.replica, to_digest(&o.digest)))
                .collect(),
            quarantined: true,
        }
    }
}

fn to_digest(bytes: &[u8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    let n = bytes.len().min(32);
    d[..n].copy_from_slice(&bytes[..n]);
    d
}

/// The outputs of one request seen so far.
#[derive(Clone, Debug)]
pub struct Tally {
    quorum: usize,
    /// By replica: the digest recomputed from the output's content (a replica's own `digest`
    /// field is not trusted), and the output.
    outputs: BTreeMap<u32, ([u8; 32], Output)>,
    /// A verdict was returned: no second one.
    decided: bool,
}

impl Tally {
    /// A tally for `replicas` = 2f+1 replicas: agreement needs f+1.
    pub fn new(replicas: u32) -> Tally {
        Tally {
            quorum: replicas as usize / 2 + 1,
            outputs: BTreeMap::new(),
            decided: false,
        }
    }

    /// Adds one replica's output (a second one from the same replica is ignored) and returns
    /// the verdict once f+1 digests agree, or once f+1 replicas crashed or timed out (a
    /// quarantine, even if they broke in different ways) — only once, at the output that
    /// completes it.
    pub fn add(&mut self, output: Output) -> Option<Verdict> {
        if self.decided || self.outputs.contains_key(&output.replica) {
            return None;
        }
        let d = digest(output.code, &output.message, &output.response);
        let code_in = output.code;
        let fault = is_fault(code_in);
        self.outputs.insert(output.replica, (d, output));
        let same = |other: &[u8; 32], o: &Output| {
            if fault { is_fault(o.code) } else { *other == d }
        };
        let agreeing: Vec<u32> = self
            .outputs
            .iter()
            .filter(|(_, (other, o))| same(other, o))
            .map(|(r, _)| *r)
            .collect();
        if agreeing.len() != self.quorum {
            return None;
        }
        self.decided = true;
        let (_, winner) = &self.outputs[&agreeing[0]];
        let (code, message, response) = if fault {
            (code_in, String::new(), Bytes::new())
        } else {
            (winner.code, winner.message.clone(), winner.response.clone())
        };
        Some(Verdict {
            request_id: winner.request_id.clone(),
            digest: digest(code, &message, &response),
            code,
            message,
            response,
            dissenting: self
                .outputs
                .iter()
                .filter(|(_, (other, o))| !same(other, o))
                .map(|(r, (other, _))| (*r, *other))
                .collect(),
            agreeing,
            quarantined: fault,
        })
    }

    /// Every output seen, by replica.
    pub fn outcomes(&self) -> Vec<ReplicaOutcome> {
        self.outputs
            .iter()
            .map(|(replica, (d, o))| ReplicaOutcome {
                replica: *replica,
                code: o.code,
                digest: Bytes::copy_from_slice(d),
                detail: o.detail.clone(),
            })
            .collect()
    }

    /// The replicas of `0..replicas` with no output yet.
    pub fn out(&self, replicas: u32) -> Vec<u32> {
        (0..replicas)
            .filter(|r| !self.outputs.contains_key(r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(replica: u32, code: u32, response: &'static [u8]) -> Output {
        Output {
            request_id: Bytes::from_static(b"r"),
            replica,
            code,
            message: String::new(),
            response: Bytes::from_static(response),
            digest: Bytes::new(),
            detail: String::new(),
            duration_us: 0,
            at_ms: 0,
        }
    }

    // Proves: with 3 replicas the verdict comes at the second agreeing output, once, naming the
    // dissenter seen before it; a repeated output of one replica does not count twice.
    #[test]
    fn two_of_three_agree_and_a_dissenter_is_named() {
        let mut t = Tally::new(3);
        assert_eq!(t.add(out(1, 0, b"bad")), None);
        assert_eq!(t.add(out(0, 0, b"good")), None);
        assert_eq!(t.add(out(0, 0, b"good")), None);
        let v = t.add(out(2, 0, b"good")).expect("a verdict");
        assert_eq!(v.agreeing, vec![0, 2]);
        assert_eq!(v.response, Bytes::from_static(b"good"));
        assert_eq!(v.dissenting, vec![(1, digest(0, "", b"bad"))]);
        assert_eq!(v.digest, digest(0, "", b"good"));
        assert_eq!(t.add(out(1, 0, b"good")), None);
    }

    // Proves: errors are voted like answers (same code and message agree), a lying digest
    // field is ignored, and one replica alone decides nothing among three.
    #[test]
    fn errors_are_voted_and_digests_are_recomputed() {
        let mut t = Tally::new(3);
        let mut liar = out(0, 5, b"");
        liar.digest = Bytes::from_static(&[9; 32]);
        assert_eq!(t.add(liar), None);
        let v = t.add(out(1, 5, b"")).expect("a verdict");
        assert_eq!((v.code, v.agreeing.clone()), (5, vec![0, 1]));
        let vote = v.to_vote("k");
        assert_eq!(Verdict::from_vote(&vote), v);
        let mut single = Tally::new(1);
        assert!(single.add(out(0, 0, b"x")).is_some());
    }

    // Proves: f+1 replicas that crashed or timed out quarantine the input even when they broke
    // in different ways, an answering replica is their dissenter, and nothing is decided twice.
    #[test]
    fn crashes_and_timeouts_together_quarantine() {
        use crate::records::{CODE_CRASH, CODE_TIMEOUT};
        let mut t = Tally::new(5);
        assert_eq!(t.add(out(0, CODE_CRASH, b"")), None);
        assert_eq!(t.add(out(1, 0, b"fine")), None);
        assert_eq!(t.add(out(2, CODE_TIMEOUT, b"")), None);
        assert_eq!(t.out(5), vec![3, 4]);
        let v = t.add(out(3, CODE_CRASH, b"")).expect("a quarantine");
        assert!(v.quarantined);
        assert_eq!(v.agreeing, vec![0, 2, 3]);
        assert_eq!(v.code, CODE_CRASH);
        assert_eq!(v.dissenting, vec![(1, digest(0, "", b"fine"))]);
        assert_eq!(t.add(out(4, CODE_CRASH, b"")), None, "decided once");
        // Outputs after the decision are checked against the verdict by the front door, not
        // tallied.
        assert_eq!(t.outcomes().len(), 4);

        // f+1 equal answers beside a crash are an ordinary verdict.
        let mut t = Tally::new(3);
        assert_eq!(t.add(out(0, CODE_TIMEOUT, b"")), None);
        assert_eq!(t.add(out(1, 0, b"a")), None);
        let v = t.add(out(2, 0, b"a")).expect("a verdict");
        assert!(!v.quarantined);
        assert_eq!(v.dissenting, vec![(0, digest(CODE_TIMEOUT, "", b""))]);
    }
}
