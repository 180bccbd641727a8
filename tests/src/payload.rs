//! The self-describing payload of chaos-test records, so the checker can name
//! every record it reads and tell a phantom or a corrupt one from a real one:
//!
//! `writer:u32 | seq:u64 | attempt:u32 | len:u32 | body (len bytes) | blake3(body) (32 bytes)`,
//! integers little-endian like every Cairn format.
//!
//! `cairn append` takes one record per input line, so [`Payload::encode_text`] gives the same
//! bytes in base64 (no newline); [`Payload::decode`] accepts both forms.

use std::fmt;

use base64::Engine as _;

/// Bytes of a payload besides its body: the four integers and the hash.
pub const PAYLOAD_OVERHEAD: usize = 4 + 8 + 4 + 4 + HASH_BYTES;

/// Bytes of the body's blake3 hash.
const HASH_BYTES: usize = 32;

/// A decoded test payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The test writer's id (not Cairn's appender id).
    pub w: u32,
    /// The writer's sequence number for this record.
    pub seq: u64,
    /// Which attempt of `(w, seq)` this is, from 0.
    pub attempt: u32,
    /// The record's body.
    pub body: Vec<u8>,
}

/// Why bytes are not a valid payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Not shaped like a payload (too short, wrong length), in neither form.
    Malformed(String),
    /// Shaped like a payload, but the body does not match its hash.
    HashMismatch {
        /// The writer it claims.
        w: u32,
        /// The sequence it claims.
        seq: u64,
        /// The attempt it claims.
        attempt: u32,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a test payload: {why}"),
            Self::HashMismatch { w, seq, attempt } => write!(
                f,
                "writer {w} seq {seq} attempt {attempt}: body does not match its blake3"
            ),
        }
    }
}

impl Payload {
    /// A payload of `body` for attempt `attempt` of `(w, seq)`.
    pub fn new(w: u32, seq: u64, attempt: u32, body: Vec<u8>) -> Self {
        Self {
            w,
            seq,
            attempt,
            body,
        }
    }

    /// The binary form.
    ///
    /// # Panics
    /// If the body is 4 GiB or more.
    pub fn encode(&self) -> Vec<u8> {
        let len = u32::try_from(self.body.len()).expect("a body under 4 GiB");
        let mut out = Vec::with_capacity(PAYLOAD_OVERHEAD + self.body.len());
        out.extend_from_slice(&self.w.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.attempt.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(blake3::hash(&self.body).as_bytes());
        out
    }

    /// The binary form in standard base64: one line of `cairn append` input.
    pub fn encode_text(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(self.encode())
            .into_bytes()
    }

    /// Decodes the binary form, or else the base64 form.
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        match decode_binary(bytes) {
            Err(PayloadError::Malformed(why)) => {
                match base64::engine::general_purpose::STANDARD.decode(bytes) {
                    Ok(binary) => decode_binary(&binary),
                    Err(_) => Err(PayloadError::Malformed(why)),
                }
            }
            other => other,
        }
    }
}

/// Decodes the binary form.
fn decode_binary(bytes: &[u8]) -> Result<Payload, PayloadError> {
    if bytes.len() < PAYLOAD_OVERHEAD {
        return Err(PayloadError::Malformed(format!(
            "{} bytes, under the {PAYLOAD_OVERHEAD} of an empty payload",
            bytes.len()
        )));
    }
    let w = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    let attempt = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    if bytes.len() != PAYLOAD_OVERHEAD + len {
        return Err(PayloadError::Malformed(format!(
            "{} bytes for a body of {len}",
            bytes.len()
        )));
    }
    let body = &bytes[20..20 + len];
    if blake3::hash(body).as_bytes() != &bytes[20 + len..] {
        return Err(PayloadError::HashMismatch { w, seq, attempt });
    }
    Ok(Payload::new(w, seq, attempt, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let p = Payload::new(7, 1 << 40, 2, b"body\nwith a newline".to_vec());
        assert_eq!(Payload::decode(&p.encode()), Ok(p.clone()));
        let text = p.encode_text();
        assert!(!text.contains(&b'\n'));
        assert_eq!(Payload::decode(&text), Ok(p.clone()));
        let empty = Payload::new(1, 1, 0, Vec::new());
        assert_eq!(Payload::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn truncation_and_garbage_are_malformed_and_a_flipped_body_byte_is_a_hash_mismatch() {
        let bytes = Payload::new(7, 3, 1, b"hello".to_vec()).encode();
        for bad in [&bytes[..bytes.len() - 1], &bytes[..10], b"junk".as_slice()] {
            assert!(
                matches!(Payload::decode(bad), Err(PayloadError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[21] ^= 1;
        assert_eq!(
            Payload::decode(&flipped),
            Err(PayloadError::HashMismatch {
                w: 7,
                seq: 3,
                attempt: 1
            })
        );
    }
}
