//! The vote: one request's outputs from n = 2f+1 replicas, agreed once f+1 digests are equal.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::records::{Dissent, Output, Vote, digest};

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
}

impl Tally {
    /// A tally for `replicas` = 2f+1 replicas: agreement needs f+1.
    pub fn new(replicas: u32) -> Tally {
        Tally {
            quorum: replicas as usize / 2 + 1,
            outputs: BTreeMap::new(),
        }
    }

    /// Adds one replica's output (a second one from the same replica is ignored) and returns
    /// the verdict once f+1 digests agree — only once, at the output that completes it.
    pub fn add(&mut self, output: Output) -> Option<Verdict> {
        if self.outputs.contains_key(&output.replica) {
            return None;
        }
        let d = digest(output.code, &output.message, &output.response);
        self.outputs.insert(output.replica, (d, output));
        let agreeing: Vec<u32> = self
            .outputs
            .iter()
            .filter(|(_, (other, _))| *other == d)
            .map(|(r, _)| *r)
            .collect();
        if agreeing.len() != self.quorum {
            return None;
        }
        let (_, winner) = &self.outputs[&agreeing[0]];
        Some(Verdict {
            request_id: winner.request_id.clone(),
            digest: d,
            code: winner.code,
            message: winner.message.clone(),
            response: winner.response.clone(),
            dissenting: self
                .outputs
                .iter()
                .filter(|(_, (other, _))| *other != d)
                .map(|(r, (other, _))| (*r, *other))
                .collect(),
            agreeing,
        })
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
}
