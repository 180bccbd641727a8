//! Property tests of the record format (FORMAT.md).
//!
//! Each property builds chunk files through the public encoders while keeping a model of what
//! was written (offsets, ids, payloads, frame boundaries), damages them in one way (a cut, a
//! flipped byte, random bytes) and checks what `Scanner`, `FrameReader`, `classify` and
//! `ChunkHeader::decode` report against the model. Case counts are set explicitly per property (see `CASES_*`) so
//! the whole file stays well under 30 s in a debug build on two shared cores (about 12 s when
//! written). `with_cases` overrides `PROPTEST_CASES`: to run more locally, raise the constants
//! in a scratch change, never in CI.

mod common;

use cairn_record::limits::{CHUNK_HEADER_BYTES, FRAME_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use cairn_record::{
    ChunkHeader, DecodeError, FrameKind, RecordId, Recovery, ScanItem, WriterId, classify,
    decode_frame, encode_padding, encode_record, encoded_len,
};
use common::{Chunk, FrameModel, Written, assert_contiguous, corrupt_of, records_of, scan_file};
use proptest::prelude::*;

/// Round trips of arbitrary batches; cheap, so many cases.
const CASES_ROUND_TRIP: u32 = 256;
/// Full chunks (one scan each).
const CASES_FULL_CHUNK: u32 = 64;
/// Each case cuts one 4 KiB chunk at every byte.
const CASES_CUT_EVERYWHERE: u32 = 16;
/// Each case flips every byte of one 4 KiB chunk.
const CASES_FLIP_EVERYWHERE: u32 = 12;
/// One random cut or flip per case, over larger chunks with larger records.
const CASES_ONE_DAMAGE: u32 = 256;
/// Chunks read by the streaming reader in random slices.
const CASES_SLICED: u32 = 64;
/// Arbitrary and mutated bytes.
const CASES_GARBAGE: u32 = 512;

fn record_id() -> impl Strategy<Value = RecordId> {
    (1..=u64::MAX, any::<u64>()).prop_map(|(writer, sequence)| RecordId {
        writer: WriterId(writer),
        sequence,
    })
}

/// Payloads biased towards the interesting lengths: empty, around the 8-byte alignment, and a
/// few larger ones.
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..=17),
        2 => prop::collection::vec(any::<u8>(), 0..=max),
        1 => (0..=max / 8).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n * 8)),
        // Payloads that look like short padding inside: a torn or damaged record must not
        // turn into padding.
        1 => prop::collection::vec(prop::bool::weighted(0.8), 0..=max / 8).prop_map(|words| {
            words
                .into_iter()
                .flat_map(|pad| if pad { *b"CAIRNPAD" } else { *b"payload!" })
                .collect()
        }),
    ]
}

fn batch(
    max_records: usize,
    max_payload: usize,
) -> impl Strategy<Value = Vec<(RecordId, Vec<u8>)>> {
    prop::collection::vec((record_id(), payload(max_payload)), 0..=max_records)
}

/// The tail a full chunk ends with: nothing, short padding (8, 16 or 24 bytes), the smallest
/// padding frame, or a longer one.
fn tail() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(8),
        Just(16),
        Just(24),
        Just(32),
        (5u64..=200).prop_map(|w| w * 8),
    ]
}

/// A chunk of `capacity` bytes holding `batch` (as far as it fits, leaving room for `tail`),
/// filled to capacity with filler records and then `tail` bytes of padding.
fn full_chunk(capacity: u64, batch: &[(RecordId, Vec<u8>)], tail: u64, handle: u64) -> Chunk {
    let mut chunk = Chunk::new(handle, capacity);
    for (id, p) in batch {
        let need = encoded_len(p.len()) as u64 + tail + FRAME_HEADER_BYTES as u64;
        if p.len() > chunk.payload_max() || need > chunk.remaining() {
            break;
        }
        chunk.push(*id, p);
    }
    chunk.fill_to_capacity(tail, WriterId(0x00f1_11e4));
    chunk
}

fn full_chunk_strategy(
    capacities: std::ops::RangeInclusive<u64>,
    max_payload: usize,
) -> impl Strategy<Value = Chunk> {
    (
        capacities.prop_map(|w| w * 8),
        batch(40, max_payload),
        tail(),
        any::<u64>(),
    )
        .prop_map(|(capacity, batch, tail, handle)| full_chunk(capacity, &batch, tail, handle))
}

/// What `classify` must say about `file[..cut]` of `chunk` when the replica had acknowledged
/// every frame boundary up to `acked` (a frame boundary at or below the cut).
fn expected_after_cut(chunk: &Chunk, cut: u64) -> Recovery {
    // A cut inside short padding at a word boundary leaves valid short padding behind.
    let in_short_padding_word = matches!(
        chunk.frame_at(cut),
        Some((o, _, FrameModel::ShortPadding)) if (cut - o).is_multiple_of(8)
    );
    let last_boundary = chunk
        .boundaries()
        .into_iter()
        .filter(|&b| b <= cut)
        .max()
        .expect("the header end is a boundary");
    if last_boundary == cut || in_short_padding_word {
        Recovery::Clean
    } else {
        Recovery::TornTail {
            valid_len: last_boundary,
        }
    }
}

/// Checks a cut of `chunk` at file offset `cut`.
fn check_cut(chunk: &Chunk, cut: u64) {
    let file = &chunk.file[..cut as usize];
    if cut < CHUNK_HEADER_BYTES as u64 {
        assert!(
            matches!(
                ChunkHeader::decode(file),
                Err(DecodeError::Incomplete { .. })
            ),
            "cut {cut} inside the header must be incomplete"
        );
        return;
    }
    assert_eq!(ChunkHeader::decode(file), Ok(chunk.header));
    let items = scan_file(file);
    assert_contiguous(&items, CHUNK_HEADER_BYTES as u64, cut);

    // Exactly the records whose frames end at or before the cut, in order.
    let expected: Vec<Written> = chunk
        .records
        .iter()
        .filter(|r| r.offset + encoded_len(r.payload.len()) as u64 <= cut)
        .cloned()
        .collect();
    assert_eq!(records_of(&items), expected, "cut at {cut}");

    // At most one bad range, and only at the very end: the torn frame.
    let corrupt = corrupt_of(&items);
    assert!(corrupt.len() <= 1, "cut at {cut}: {corrupt:?}");
    if let Some(&(offset, len)) = corrupt.first() {
        assert_eq!(offset + len, cut, "the torn range must reach the cut");
    }

    // Acknowledgements land on frame boundaries. Any boundary at or below the cut: a torn tail
    // (or clean, if the cut fell on a boundary). Any length past the cut: corruption.
    let expected = expected_after_cut(chunk, cut);
    let body = &file[CHUNK_HEADER_BYTES..];
    for acked in chunk.boundaries() {
        let got = classify(body, CHUNK_HEADER_BYTES as u64, acked);
        let valid_len = match expected {
            Recovery::TornTail { valid_len } => valid_len,
            _ => cut,
        };
        if acked <= valid_len {
            assert_eq!(got, expected, "cut {cut}, acked {acked}");
        } else {
            let Recovery::Corrupt { ranges } = got else {
                panic!("cut {cut}, acked {acked} past the valid frames: {got:?}");
            };
            assert_eq!(ranges.last().expect("a range").end(), acked.max(cut));
        }
    }
    // An acknowledged length past the cut itself (not only past the frames) is corruption too.
    let got = classify(body, CHUNK_HEADER_BYTES as u64, cut + 8);
    assert!(
        matches!(got, Recovery::Corrupt { .. }),
        "cut {cut}: {got:?}"
    );
}

/// Checks `chunk` with the byte at file offset `at` XORed with `mask` (non-zero).
fn check_flip(chunk: &Chunk, at: u64, mask: u8) {
    assert_ne!(mask, 0);
    let mut file = chunk.file.clone();
    file[at as usize] ^= mask;
    let items = scan_file(&file);
    let end = chunk.len();
    assert_contiguous(&items, CHUNK_HEADER_BYTES as u64, end);

    if at < CHUNK_HEADER_BYTES as u64 {
        // A header flip is caught by the header check; the frames are untouched.
        assert!(
            matches!(ChunkHeader::decode(&file), Err(DecodeError::Corrupt { .. })),
            "header flip at {at} (mask {mask:#04x}) went unnoticed"
        );
        assert_eq!(records_of(&items), chunk.records);
        assert!(corrupt_of(&items).is_empty());
        return;
    }
    assert_eq!(ChunkHeader::decode(&file), Ok(chunk.header));

    let (frame_offset, _, what) = chunk.frame_at(at).expect("every byte is in a frame");
    // Every record except the one hit comes back unchanged, at its offset; no other record
    // appears.
    let expected: Vec<Written> = chunk
        .records
        .iter()
        .enumerate()
        .filter(|&(i, _)| what != FrameModel::Record(i))
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        records_of(&items),
        expected,
        "flip at {at} (mask {mask:#04x}) in {what:?} at {frame_offset}"
    );
    // The damage is reported as exactly one range, starting where the hit frame starts.
    let corrupt = corrupt_of(&items);
    assert_eq!(
        corrupt.len(),
        1,
        "flip at {at} (mask {mask:#04x}): {corrupt:?}"
    );
    let (offset, len) = corrupt[0];
    assert_eq!(offset, frame_offset, "flip at {at}");
    assert!(
        offset <= at && at < offset + len,
        "flip at {at} outside {corrupt:?}"
    );
    // With everything acknowledged, it is corruption, never a torn tail to cut.
    let body = &file[CHUNK_HEADER_BYTES..];
    assert!(matches!(
        classify(body, CHUNK_HEADER_BYTES as u64, end),
        Recovery::Corrupt { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_ROUND_TRIP))]

    /// Arbitrary batches encode and scan back to themselves, at the offsets the encoder
    /// reported, and each decoded frame re-encodes to the same bytes.
    #[test]
    fn batches_round_trip(batch in batch(24, 600), handle in any::<u64>()) {
        let mut chunk = Chunk::new(handle, 1 << 20);
        for (id, p) in &batch {
            chunk.push(*id, p);
        }
        let items = scan_file(&chunk.file);
        assert_contiguous(&items, CHUNK_HEADER_BYTES as u64, chunk.len());
        prop_assert_eq!(records_of(&items), chunk.records.clone());
        prop_assert_eq!(items.len(), batch.len());
        prop_assert_eq!(ChunkHeader::decode(&chunk.file), Ok(chunk.header));
        prop_assert_eq!(classify(&chunk.file[32..], 32, chunk.len()), Recovery::Clean);
        for r in &chunk.records {
            let at = r.offset as usize;
            let frame = decode_frame(&chunk.file[at..]).expect("decodes");
            prop_assert_eq!(frame.kind, FrameKind::Data);
            let mut again = Vec::new();
            encode_record(&mut again, frame.id, frame.payload, RECORD_PAYLOAD_BYTES_MAX)
                .expect("re-encodes");
            prop_assert_eq!(&again[..], &chunk.file[at..at + again.len()]);
        }
    }

    /// Padding of any aligned length decodes as padding of that length and re-encodes the same.
    #[test]
    fn padding_round_trips(words in 1usize..=600) {
        let mut out = Vec::new();
        encode_padding(&mut out, words * 8).expect("aligned");
        prop_assert_eq!(out.len(), words * 8);
        let items: Vec<_> = cairn_record::Scanner::new(&out, 32).collect();
        prop_assert_eq!(items, vec![ScanItem::Padding { offset: 32, len: words as u64 * 8 }]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_FULL_CHUNK))]

    /// A full chunk (header, records, padding up to the capacity, including short padding
    /// remainders of 8, 16 and 24 bytes) scans back to every record and one padding run.
    #[test]
    fn full_chunk_returns_every_record(chunk in full_chunk_strategy(512..=2048, 1024)) {
        let items = scan_file(&chunk.file);
        assert_contiguous(&items, CHUNK_HEADER_BYTES as u64, chunk.len());
        prop_assert_eq!(records_of(&items), chunk.records.clone());
        let padding: Vec<_> = items
            .iter()
            .filter_map(|i| match *i {
                ScanItem::Padding { offset, len } => Some((offset, len)),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = chunk
            .frames
            .iter()
            .filter(|f| !matches!(f.2, FrameModel::Record(_)))
            .map(|f| (f.0, f.1))
            .collect();
        prop_assert_eq!(padding, expected);
        prop_assert!(corrupt_of(&items).is_empty());
        prop_assert_eq!(ChunkHeader::decode(&chunk.file), Ok(chunk.header));
        prop_assert_eq!(
            classify(&chunk.file[32..], 32, u64::from(chunk.header.capacity)),
            Recovery::Clean
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_CUT_EVERYWHERE))]

    /// Cutting a valid 4 KiB chunk at every byte yields exactly a prefix of its records, at
    /// most one bad range (at the end), and the torn-tail/corruption verdict the rule gives.
    #[test]
    fn cut_anywhere_yields_a_prefix(chunk in full_chunk_strategy(512..=512, 300)) {
        for cut in 0..=chunk.len() {
            check_cut(&chunk, cut);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_FLIP_EVERYWHERE))]

    /// Flipping any single byte of a 4 KiB chunk, header or frame, is caught; no wrong record is
    /// returned and every other record still is.
    #[test]
    fn flip_any_byte_is_caught(
        chunk in full_chunk_strategy(512..=512, 300),
        masks in prop::collection::vec(1u8..=255, 64),
    ) {
        for at in 0..chunk.len() {
            check_flip(&chunk, at, masks[at as usize % masks.len()]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_ONE_DAMAGE))]

    /// One random cut in larger chunks with larger records.
    #[test]
    fn one_cut_in_a_large_chunk(
        chunk in full_chunk_strategy(1024..=8192, 16 << 10),
        at in any::<prop::sample::Index>(),
    ) {
        check_cut(&chunk, at.index(chunk.len() as usize + 1) as u64);
    }

    /// One random flip in larger chunks with larger records.
    #[test]
    fn one_flip_in_a_large_chunk(
        chunk in full_chunk_strategy(1024..=8192, 16 << 10),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        check_flip(&chunk, at.index(chunk.len() as usize) as u64, mask);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_GARBAGE))]

    /// Arbitrary bytes never panic any decoder, and what they yield is self-consistent (the
    /// invariants the fuzz target asserts).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = ChunkHeader::decode(&bytes);
        let _ = decode_frame(&bytes);
        let _ = cairn_record::is_short_padding(&bytes);
        scan_check::check(&bytes);
    }

    /// A valid chunk with a few bytes overwritten: the same invariants, on inputs that reach
    /// deep into the decoders.
    #[test]
    fn mutated_chunks_never_panic(
        chunk in full_chunk_strategy(512..=1024, 500),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut file = chunk.file.clone();
        for (at, byte) in edits {
            let i = at.index(file.len());
            file[i] = byte;
        }
        file.truncate(cut.index(file.len() + 1));
        scan_check::check(&file);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES_SLICED))]

    /// A chunk file, whole or damaged (bytes overwritten, cut anywhere), read by the streaming
    /// reader in slices of random sizes (each case its own sizes, from proptest's seeded
    /// generator), yields exactly the header and items of one scan of the whole file; the same
    /// for its frames read from offset 32.
    #[test]
    fn sliced_reads_match_one_scan(
        chunk in full_chunk_strategy(512..=2048, 1024),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
        sizes in prop::collection::vec(prop_oneof![1usize..=16, 17usize..=600, 600usize..=20_000], 1..12),
    ) {
        let mut file = chunk.file.clone();
        for (at, byte) in edits {
            let i = at.index(file.len());
            file[i] = byte;
        }
        if let Some(cut) = cut {
            file.truncate(cut.index(file.len() + 1));
        }
        // The random sizes, and one word at a time (which cuts at every frame boundary).
        for sizes in [&sizes[..], &[8]] {
            scan_check::check_sliced_chunk(&file, sizes);
            if file.len() >= CHUNK_HEADER_BYTES {
                let frames = &file[CHUNK_HEADER_BYTES..];
                scan_check::check_sliced(frames, CHUNK_HEADER_BYTES as u64, sizes);
            }
        }
    }
}

/// The fuzz target's body, so its invariants are checked (and it compiles) in every test run.
#[path = "../fuzz/checks/scan.rs"]
mod scan_check;

/// Sizes the helpers rely on, so a change in the format's constants fails loudly here.
#[test]
fn helper_assumptions_hold() {
    assert_eq!(CHUNK_HEADER_BYTES, 32);
    assert_eq!(FRAME_HEADER_BYTES, 32);
    assert!(cairn_record::limits::record_payload_bytes_max(4096) >= 300);
}
