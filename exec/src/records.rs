//! The execution layer's records (generated from `proto/cairn/exec/v1/exec.proto`: INPUT,
//! OUTPUT, VOTE, SNAPSHOT and the worker frames) and the two hashes they carry: an input's
//! fingerprint and an outcome's digest (FORMAT.md).

use bytes::Bytes;
use prost::Message;

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod generated {
    tonic::include_proto!("cairn.exec.v1");
}

pub use generated::exec_record::Kind;
pub use generated::{
    Dissent, ExecRecord, Input, Lift, Output, Pending, Quarantine, ReplicaOutcome, Snapshot,
    SnapshotBytes, Vote, WorkerReply, WorkerRequest,
};

/// A request id's length in bytes.
pub const REQUEST_ID_BYTES: usize = 16;

/// The outcome code of an OUTPUT whose worker process died while running the input (panic,
/// abort, signal, OOM kill). Above every gRPC code; its digest covers no message or response.
pub const CODE_CRASH: u32 = 1000;
/// The outcome code of an OUTPUT whose handler ran past the input's deadline and was killed.
pub const CODE_TIMEOUT: u32 = 1001;

/// Whether `code` says the input broke its replica (CRASH or TIMEOUT) rather than answered.
pub fn is_fault(code: u32) -> bool {
    code == CODE_CRASH || code == CODE_TIMEOUT
}

/// Milliseconds since the Unix epoch by this machine's clock (0 if it reads before 1970): the
/// front door's timestamps in records. Never used by a handler (determinism).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A code's name for people: CRASH, TIMEOUT, or the gRPC code's name.
pub fn code_name(code: u32) -> String {
    match code {
        CODE_CRASH => "CRASH".to_owned(),
        CODE_TIMEOUT => "TIMEOUT".to_owned(),
        c => match i32::try_from(c) {
            Ok(c) if c <= 16 => format!("{:?}", tonic::Code::from(c)),
            _ => format!("code {c}"),
        },
    }
}

/// `blake3(u32 LE length of method ‖ method ‖ message)`: what identifies a call's content.
pub fn fingerprint(method: &str, message: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(method.len() as u32).to_le_bytes());
    hasher.update(method.as_bytes());
    hasher.update(message);
    *hasher.finalize().as_bytes()
}

/// `blake3(u32 LE code ‖ u32 LE length of message ‖ message ‖ response)`: what replicas vote on.
pub fn digest(code: u32, message: &str, response: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&code.to_le_bytes());
    hasher.update(&(message.len() as u32).to_le_bytes());
    hasher.update(message.as_bytes());
    hasher.update(response);
    *hasher.finalize().as_bytes()
}

impl ExecRecord {
    /// The record's payload bytes.
    pub fn to_payload(&self) -> Bytes {
        Bytes::from(self.encode_to_vec())
    }

    /// Decodes a record payload; `None` if it is not an execution-layer record.
    pub fn from_payload(payload: &[u8]) -> Option<Kind> {
        ExecRecord::decode(payload).ok()?.kind
    }
}

impl From<Kind> for ExecRecord {
    fn from(kind: Kind) -> ExecRecord {
        ExecRecord { kind: Some(kind) }
    }
}

impl WorkerReply {
    /// This outcome's digest.
    pub fn digest(&self) -> [u8; 32] {
        digest(self.code, &self.message, &self.response)
    }
}

/// Lower-case hex of `bytes` (request ids in metadata and logs).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    text
}

/// Parses lower- or upper-case hex; `None` if it is not.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: a record survives its payload encoding and the oneof names its kind.
    #[test]
    fn records_round_trip_through_payloads() {
        let input = Input {
            request_id: Bytes::from_static(&[7; REQUEST_ID_BYTES]),
            method: "/bank.v1.Bank/Open".into(),
            message: Bytes::from_static(b"abc"),
            fingerprint: Bytes::copy_from_slice(&fingerprint("/bank.v1.Bank/Open", b"abc")),
            received_at_ms: 5,
            seed: 9,
            idempotency_key: "k".into(),
            deadline_ms: 1000,
        };
        let payload = ExecRecord::from(Kind::Input(input.clone())).to_payload();
        assert_eq!(ExecRecord::from_payload(&payload), Some(Kind::Input(input)));
        assert_eq!(ExecRecord::from_payload(b"\xff\xff\xff"), None);
    }

    // Proves: the fingerprint separates method from message and the digest covers every part
    // of an outcome.
    #[test]
    fn hashes_tell_their_parts_apart() {
        assert_ne!(fingerprint("/a/b", b"c"), fingerprint("/a/bc", b""));
        assert_eq!(fingerprint("/a/b", b"c"), fingerprint("/a/b", b"c"));
        let base = digest(0, "", b"x");
        assert_ne!(base, digest(1, "", b"x"));
        assert_ne!(base, digest(0, "m", b"x"));
        assert_ne!(base, digest(0, "", b"y"));
        assert_ne!(digest(0, "ab", b""), digest(0, "a", b"b"));
    }

    // Proves: hex round-trips and refuses what is not hex.
    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001ABff"), Some(bytes.to_vec()));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
