//! Helpers shared by the store's integration tests.

use bytes::Bytes;
use cairn_record::{RecordId, WriterId, encode_record};

/// One encoded data frame of `len` payload bytes derived from `sequence`.
pub(crate) fn frame(writer: u64, sequence: u64, len: usize) -> Bytes {
    let mut out = Vec::new();
    let payload: Vec<u8> = (0..len).map(|i| (i as u64 ^ sequence) as u8).collect();
    encode_record(
        &mut out,
        RecordId {
            writer: WriterId(writer),
            sequence,
        },
        &payload,
        1 << 20,
    )
    .unwrap();
    Bytes::from(out)
}
