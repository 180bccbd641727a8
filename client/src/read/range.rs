//! Reading one range of a chunk: fetch, scan, carry a cut frame, repair from other replicas.
//!
//! The logic is generic over a [`Source`] of replica bytes so that it runs on synthetic buffers
//! in tests exactly as it runs on `Read` RPCs.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use cairn_record::{ChunkOffset, FrameReader, ReadItem, RecordId, encoded_len};

use crate::error::{Error, Result};
use crate::limits::{READ_RANGE_BYTES, READ_RPC_BYTES_MAX};

/// Bytes one replica returned for a read.
#[derive(Clone, Debug)]
pub(crate) struct Fetched {
    /// The bytes from the requested offset.
    pub(crate) data: Bytes,
    /// Bytes below this are readable on that replica (commit offset, or sealed length).
    pub(crate) readable_end: ChunkOffset,
    /// The replica is sealed.
    pub(crate) sealed: bool,
    /// The replica holds the open chunk's primary role, so `readable_end` is the commit offset,
    /// which covers every acknowledged record (a secondary's lags).
    pub(crate) primary: bool,
}

/// Where the bytes of one chunk come from: its replicas, by position (0 is tried first).
pub(crate) trait Source {
    /// Number of replicas.
    fn replicas(&self) -> usize;
    /// Up to `max_bytes` bytes from `offset` of replica `replica`, waiting up to `wait_ms` for
    /// bytes of an open chunk when none are readable at `offset`.
    fn read(
        &self,
        replica: usize,
        offset: ChunkOffset,
        max_bytes: u64,
        wait_ms: u32,
    ) -> impl Future<Output = Result<Fetched>> + Send;
}

/// One thing found in a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RangeItem {
    /// A verified record; the payload shares the received buffer.
    Record {
        /// File offset of its frame.
        offset: ChunkOffset,
        /// Its id.
        id: RecordId,
        /// The payload.
        payload: Bytes,
    },
    /// Padding.
    Padding {
        /// File offset of the run.
        offset: ChunkOffset,
        /// Bytes covered.
        len: u64,
    },
    /// Bytes no replica had whole.
    Bad {
        /// File offset of the first bad byte.
        offset: ChunkOffset,
        /// Bytes skipped.
        len: u64,
        /// Replicas whose copy of the range was tried.
        tried: usize,
    },
}

/// The result of reading one range.
#[derive(Clone, Debug)]
pub(crate) struct RangeRead {
    /// What the range held, in order.
    pub(crate) items: Vec<RangeItem>,
    /// File offset where the next range starts (the start of a cut frame, or the range end).
    pub(crate) next: ChunkOffset,
    /// The replica's readable end at the time of the read.
    pub(crate) readable_end: ChunkOffset,
    /// The chunk is sealed (so `readable_end` is final).
    pub(crate) sealed: bool,
    /// `readable_end` covers every record acknowledged before the read: it came from a sealed
    /// replica, or from the open chunk's primary. A secondary's end of an open chunk may lag;
    /// the chunk must not be ended there.
    pub(crate) authoritative: bool,
    /// With bad items left: why some other replica could not show its copy of them (down,
    /// paused, or serving less than the range), so they may yet be whole there. `None` when
    /// every replica was read: the bytes are bad everywhere.
    pub(crate) unread: Option<String>,
}

/// What scanning one buffer gave.
#[derive(Debug)]
enum Scan {
    /// Items up to `next`; `bad` if some bytes were not frames.
    Items {
        items: Vec<RangeItem>,
        next: ChunkOffset,
        bad: bool,
    },
    /// The range starts with a frame longer than the buffer: fetch `needed` bytes from the
    /// range start.
    NeedBytes { needed: u64 },
}

/// Scans `buf` (file offset `base`). `last` says the buffer reaches the readable end, so a
/// frame cut at its end is damage, not a range boundary. Otherwise, bad bytes that are a frame
/// running past the buffer's end, or that reach its end, are left for the next range, which
/// starts where they do (it re-reads them whole, or sees them followed by good frames).
fn scan(buf: &Bytes, base: ChunkOffset, last: bool) -> Scan {
    let end = base + buf.len() as u64;
    // The frame reader counts plain file positions; they are this chunk's offsets.
    let mut reader = FrameReader::new(base.0);
    reader.feed(buf.clone());
    if last {
        reader.finish();
    }
    let mut items = Vec::new();
    let mut bad = false;
    for item in reader.by_ref() {
        match item {
            ReadItem::Record {
                offset,
                id,
                payload,
                ..
            } => items.push(RangeItem::Record {
                offset: ChunkOffset(offset),
                id,
                payload,
            }),
            ReadItem::Padding { offset, len } => items.push(RangeItem::Padding {
                offset: ChunkOffset(offset),
                len,
            }),
            ReadItem::Corrupt { offset, len } => {
                bad = true;
                items.push(RangeItem::Bad {
                    offset: ChunkOffset(offset),
                    len,
                    tried: 1,
                });
            }
            // A frame running past the buffer's end (never once `last`): the next range starts
            // with it, or re-reads it whole if it is all this range holds.
            ReadItem::Incomplete { offset, .. } if offset > base.0 => {
                return Scan::Items {
                    items,
                    next: ChunkOffset(offset),
                    bad,
                };
            }
            ReadItem::Incomplete { needed, .. } => return Scan::NeedBytes { needed },
            ReadItem::Header { .. } => {}
        }
    }
    // Bad bytes reaching the buffer's end (never once `last`): the next range starts where they
    // do, and sees where they end; if they fill this whole range, they are reported here.
    if let Some(start) = reader.bad_since().map(ChunkOffset) {
        if start > base {
            return Scan::Items {
                items,
                next: start,
                bad,
            };
        }
        bad = true;
        items.push(RangeItem::Bad {
            offset: start,
            len: end - start,
            tried: 1,
        });
    }
    Scan::Items {
        items,
        next: end,
        bad,
    }
}

/// Reads and scans the range from `base` of a chunk whose readable end is `end` (a sealed
/// chunk's length) or, if `None`, whatever the first replica reports (an open chunk, read from
/// its primary, which is replica 0).
///
/// Replicas are tried from `*preferred` on; the one that answered becomes preferred. A range
/// with bad bytes is fetched again from every other replica, and the first copy that scans
/// clean is used; if none does, the bad bytes come back as [`RangeItem::Bad`].
pub(crate) async fn read_range<S: Source>(
    src: &S,
    preferred: &mut usize,
    base: ChunkOffset,
    end: Option<ChunkOffset>,
    wait_ms: u32,
) -> Result<RangeRead> {
    let want = end.map_or(READ_RANGE_BYTES, |e| {
        e.0.saturating_sub(base.0).min(READ_RANGE_BYTES)
    });
    let (replica, first) = fetch_any(src, preferred, base, want, end, wait_ms).await?;
    let readable_end = end.unwrap_or(first.readable_end);
    let mut data = first.data;
    let mut scanned = scan(&data, base, base + data.len() as u64 >= readable_end);
    if let Scan::NeedBytes { needed } = scanned {
        let needed = needed.min(readable_end.0.saturating_sub(base.0));
        data = fetch_exact(src, replica, base, needed).await?;
        scanned = scan(&data, base, base + data.len() as u64 >= readable_end);
    }
    let (mut items, mut next, bad) = match scanned {
        Scan::Items { items, next, bad } => (items, next, bad),
        Scan::NeedBytes { .. } => {
            return Err(Error::Protocol {
                message: format!("replica returned a short read at offset {base}"),
            });
        }
    };
    let mut unread = None;
    if bad {
        // Another replica's copy of the range: used whole if it scans clean, else each bad
        // span is patched with the whole frames another replica has there (replicas hold the
        // same bytes at the same offsets, so bad spans start and end on frame boundaries).
        let last = base + data.len() as u64 >= readable_end;
        let mut tried = 1;
        let mut remaining = true;
        for other in (0..src.replicas()).filter(|&r| r != replica) {
            tried += 1;
            let copy = match fetch_exact(src, other, base, data.len() as u64).await {
                Ok(copy) => copy,
                Err(e) => {
                    unread = Some(e.to_string());
                    continue;
                }
            };
            match scan(&copy, base, last) {
                Scan::Items {
                    items: good,
                    next: good_next,
                    bad: false,
                } => {
                    items = good;
                    next = good_next;
                    remaining = false;
                }
                Scan::Items { items: theirs, .. } => remaining = patch(&mut items, &theirs),
                Scan::NeedBytes { .. } => {}
            }
            if !remaining {
                break;
            }
        }
        if !remaining {
            tried = 0;
            unread = None;
        }
        for item in &mut items {
            if let RangeItem::Bad { tried: t, .. } = item {
                *t = tried;
            }
        }
    }
    Ok(RangeRead {
        items,
        next,
        readable_end,
        sealed: first.sealed,
        authoritative: end.is_some() || first.sealed || first.primary,
        unread,
    })
}

/// File bytes an item covers.
fn span(item: &RangeItem) -> (ChunkOffset, ChunkOffset) {
    match item {
        RangeItem::Record {
            offset, payload, ..
        } => (*offset, *offset + encoded_len(payload.len()) as u64),
        RangeItem::Padding { offset, len } | RangeItem::Bad { offset, len, .. } => {
            (*offset, *offset + *len)
        }
    }
}

/// Replaces every bad item of `items` whose span `theirs` covers exactly with good items
/// (records or padding, contiguous). Returns whether bad items remain.
fn patch(items: &mut Vec<RangeItem>, theirs: &[RangeItem]) -> bool {
    let mut out = Vec::with_capacity(items.len());
    let mut remaining = false;
    for item in items.drain(..) {
        if let RangeItem::Bad { offset, len, .. } = item {
            let (start, end) = (offset, offset + len);
            let cover: Vec<&RangeItem> = theirs
                .iter()
                .filter(|t| {
                    let (s, e) = span(t);
                    s >= start && e <= end
                })
                .collect();
            let mut at = start;
            let whole = !cover.is_empty()
                && cover.iter().all(|t| {
                    let (s, e) = span(t);
                    let ok = s == at && !matches!(t, RangeItem::Bad { .. });
                    at = e;
                    ok
                })
                && at == end;
            if whole {
                out.extend(cover.into_iter().cloned());
                continue;
            }
            remaining = true;
        }
        out.push(item);
    }
    *items = out;
    remaining
}

/// The first replica from `*preferred` on that returns the whole range (`want` bytes, or as
/// many as it says are readable when `end` is unknown). A sealed chunk's replica returning
/// less is passed over, unless no replica returns more.
async fn fetch_any<S: Source>(
    src: &S,
    preferred: &mut usize,
    base: ChunkOffset,
    want: u64,
    end: Option<ChunkOffset>,
    wait_ms: u32,
) -> Result<(usize, Fetched)> {
    let n = src.replicas();
    if n == 0 {
        return Err(Error::Unavailable {
            message: "the chunk has no replica to read from".into(),
        });
    }
    let mut best: Option<(usize, Fetched)> = None;
    let mut last_error = None;
    for i in 0..n {
        let replica = (*preferred + i) % n;
        match src.read(replica, base, want, wait_ms).await {
            Ok(f) if end.is_none() || f.data.len() as u64 >= want => {
                *preferred = replica;
                return Ok((replica, f));
            }
            Ok(f) => {
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| f.data.len() > b.data.len())
                {
                    best = Some((replica, f));
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match (best, last_error) {
        (Some((replica, f)), _) => {
            *preferred = replica;
            Ok((replica, f))
        }
        (None, Some(e)) => Err(e),
        (None, None) => unreachable!("n > 0 replicas were tried"),
    }
}

/// Exactly `len` bytes from `base` of one replica, in several reads if one read cannot carry
/// them (a frame longer than [`READ_RPC_BYTES_MAX`]). One read's buffer is used as it is.
async fn fetch_exact<S: Source>(
    src: &S,
    replica: usize,
    base: ChunkOffset,
    len: u64,
) -> Result<Bytes> {
    let first = src
        .read(replica, base, len.min(READ_RPC_BYTES_MAX), 0)
        .await?
        .data;
    if first.len() as u64 >= len {
        return Ok(first.slice(..len as usize));
    }
    let mut joined = BytesMut::with_capacity(len as usize);
    joined.extend_from_slice(&first);
    while (joined.len() as u64) < len {
        let at = base + joined.len() as u64;
        let more = src
            .read(
                replica,
                at,
                (len - joined.len() as u64).min(READ_RPC_BYTES_MAX),
                0,
            )
            .await?
            .data;
        if more.is_empty() {
            return Err(Error::Unavailable {
                message: format!("replica {replica} has no bytes at offset {at}"),
            });
        }
        joined.extend_from_slice(&more);
    }
    Ok(joined.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_record::limits::CHUNK_HEADER_BYTES;
    use cairn_record::{encode_padding, encode_record};
    use std::sync::Mutex;

    /// Replicas as in-memory chunk files; reads are capped at `read_cap` bytes and counted.
    pub(crate) struct MemSource {
        pub(crate) files: Vec<Option<Vec<u8>>>,
        pub(crate) read_cap: u64,
        pub(crate) sealed: bool,
        pub(crate) reads: Mutex<Vec<(usize, ChunkOffset, u64)>>,
    }

    impl MemSource {
        pub(crate) fn new(files: Vec<Option<Vec<u8>>>) -> MemSource {
            MemSource {
                files,
                read_cap: u64::MAX,
                sealed: true,
                reads: Mutex::new(Vec::new()),
            }
        }
    }

    impl Source for MemSource {
        fn replicas(&self) -> usize {
            self.files.len()
        }
        async fn read(
            &self,
            replica: usize,
            offset: ChunkOffset,
            max_bytes: u64,
            _wait_ms: u32,
        ) -> Result<Fetched> {
            self.reads
                .lock()
                .unwrap()
                .push((replica, offset, max_bytes));
            let Some(file) = &self.files[replica] else {
                return Err(Error::Unavailable {
                    message: format!("replica {replica} down"),
                });
            };
            let end = file.len() as u64;
            let to = (offset.0 + max_bytes.min(self.read_cap)).min(end);
            Ok(Fetched {
                data: Bytes::copy_from_slice(&file[offset.0 as usize..to as usize]),
                readable_end: ChunkOffset(end),
                sealed: self.sealed,
                primary: !self.sealed && replica == 0,
            })
        }
    }

    /// A chunk file: a 32-byte header (zeros will do: reads start at 32) and records whose
    /// payloads are `sizes` bytes, writer 5, sequences from 1. Returns the file and offsets.
    pub(crate) fn chunk(sizes: &[usize]) -> (Vec<u8>, Vec<ChunkOffset>) {
        let mut file = vec![0u8; CHUNK_HEADER_BYTES];
        let mut offsets = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            offsets.push(ChunkOffset(file.len() as u64));
            let id = RecordId {
                writer: cairn_record::WriterId(5),
                sequence: i as u64 + 1,
            };
            encode_record(&mut file, id, &vec![i as u8; n], 16 << 20).unwrap();
        }
        (file, offsets)
    }

    /// Reads a whole sealed chunk (`end` bytes long) range by range, as replay does.
    pub(crate) async fn read_all<S: Source + Sync>(src: &S, end: u64) -> Vec<RangeItem> {
        let end = ChunkOffset(end);
        let mut preferred = 0;
        let mut pos = ChunkOffset::FIRST_FRAME;
        let mut all = Vec::new();
        while pos < end {
            let r = read_range(src, &mut preferred, pos, Some(end), 0)
                .await
                .unwrap();
            assert!(r.next > pos, "every range makes progress");
            all.extend(r.items);
            pos = r.next;
        }
        all
    }

    fn sequences(items: &[RangeItem]) -> Vec<u64> {
        items
            .iter()
            .filter_map(|i| match i {
                RangeItem::Record { id, .. } => Some(id.sequence),
                _ => None,
            })
            .collect()
    }

    // Proves: a frame cut by the range end is re-read from its start in the next range, so
    // every record comes back once and whole, with reads capped well below the chunk size.
    #[tokio::test]
    async fn frame_straddling_a_range_boundary_is_carried() {
        let (file, offsets) = chunk(&[1000, 3000, 50, 7000, 10]);
        let end = file.len() as u64;
        let mut src = MemSource::new(vec![Some(file.clone())]);
        src.read_cap = 4096;
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3, 4, 5]);
        for item in &items {
            if let RangeItem::Record {
                offset,
                id,
                payload,
            } = item
            {
                assert_eq!(*offset, offsets[id.sequence as usize - 1]);
                assert!(payload.iter().all(|&b| b == id.sequence as u8 - 1));
            }
        }
    }

    // Proves: a frame longer than one read is fetched in several reads and joined.
    #[tokio::test]
    async fn frame_longer_than_a_read_is_joined() {
        let (file, _) = chunk(&[100, 20_000, 100]);
        let end = file.len() as u64;
        let mut src = MemSource::new(vec![Some(file)]);
        src.read_cap = 4096;
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3]);
    }

    // Proves: a corrupt range on the first replica is repaired from a second one that has it
    // whole; the first replica stays preferred for later ranges only if it answered whole.
    #[tokio::test]
    async fn corrupt_range_is_repaired_from_another_replica() {
        let (good, offsets) = chunk(&[100, 200, 300]);
        let mut bad = good.clone();
        bad[offsets[1].0 as usize + 40] ^= 0x55;
        let end = good.len() as u64;
        let src = MemSource::new(vec![Some(bad), None, Some(good)]);
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3]);
        assert!(!items.iter().any(|i| matches!(i, RangeItem::Bad { .. })));
    }

    // Proves: with a different record corrupt on each of three replicas (helix: no replica's
    // copy of the range is clean, every record is whole somewhere), each bad frame is patched
    // from a replica that has it whole, and nothing is reported bad.
    #[tokio::test]
    async fn helix_corruption_is_patched_frame_by_frame() {
        let (good, offsets) = chunk(&[100, 200, 300, 150, 250]);
        let end = good.len() as u64;
        let mut copies = Vec::new();
        for k in [1usize, 2, 3] {
            let mut bad = good.clone();
            bad[offsets[k].0 as usize + 40] ^= 0x55;
            copies.push(Some(bad));
        }
        let src = MemSource::new(copies);
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3, 4, 5]);
        assert!(!items.iter().any(|i| matches!(i, RangeItem::Bad { .. })));
    }

    // Proves: the same record corrupt on every replica stays bad (with every replica tried),
    // while the records around it, each whole somewhere, are returned.
    #[tokio::test]
    async fn a_frame_bad_everywhere_stays_bad_and_the_rest_is_patched() {
        let (good, offsets) = chunk(&[100, 200, 300, 150]);
        let end = good.len() as u64;
        let mut a = good.clone();
        let mut b = good.clone();
        a[offsets[0].0 as usize + 40] ^= 0x55;
        a[offsets[2].0 as usize + 40] ^= 0x55;
        b[offsets[2].0 as usize + 40] ^= 0x55;
        let src = MemSource::new(vec![Some(a), Some(b)]);
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 2, 4]);
        assert!(
            items
                .iter()
                .any(|i| matches!(i, RangeItem::Bad { tried: 2, .. }))
        );
    }

    /// Replicas whose chunkserver marked its copy corrupt: reads of them answer DATA_LOSS.
    struct DataLossOn<'a>(&'a MemSource, Vec<usize>);

    impl Source for DataLossOn<'_> {
        fn replicas(&self) -> usize {
            self.0.replicas()
        }
        async fn read(
            &self,
            replica: usize,
            offset: ChunkOffset,
            max_bytes: u64,
            wait_ms: u32,
        ) -> Result<Fetched> {
            if self.1.contains(&replica) {
                let status = tonic::Status::data_loss("chunk 000000000000005c corrupt");
                return Err(Error::from_chunkserver(status, "cs"));
            }
            self.0.read(replica, offset, max_bytes, wait_ms).await
        }
    }

    // Proves: a replica answering DATA_LOSS (a chunkserver that found its copy corrupt) is
    // passed over for the next one, both for the first fetch and for the repair of a bad range
    // found on another replica; the replay does not fail.
    #[tokio::test]
    async fn data_loss_from_a_replica_moves_on_to_the_next() {
        let (good, offsets) = chunk(&[100, 200, 300]);
        let end = good.len() as u64;
        let mem = MemSource::new(vec![Some(good.clone()), Some(good.clone())]);
        let items = read_all(&DataLossOn(&mem, vec![0]), end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3]);

        let mut bad = good.clone();
        bad[offsets[1].0 as usize + 40] ^= 0x55;
        let mem = MemSource::new(vec![Some(bad), Some(good.clone()), Some(good)]);
        let items = read_all(&DataLossOn(&mem, vec![1]), end).await;
        assert_eq!(sequences(&items), vec![1, 2, 3]);
        assert!(!items.iter().any(|i| matches!(i, RangeItem::Bad { .. })));
    }

    // Proves: bad bytes that another replica could not show its copy of (down, paused) are
    // returned with why, so the reader retries instead of reporting a skipped range; once every
    // replica has shown its bad copy, nothing is left unread.
    #[tokio::test]
    async fn bad_bytes_say_whether_a_replica_was_left_unread() {
        let (good, offsets) = chunk(&[100, 200, 300]);
        let mut bad = good.clone();
        bad[offsets[1].0 as usize + 40] ^= 0x55;
        let end = ChunkOffset(good.len() as u64);
        let base = ChunkOffset::FIRST_FRAME;
        let src = MemSource::new(vec![Some(bad.clone()), None]);
        let read = read_range(&src, &mut 0, base, Some(end), 0).await.unwrap();
        assert!(
            read.items
                .iter()
                .any(|i| matches!(i, RangeItem::Bad { .. }))
        );
        assert!(read.unread.is_some());
        let src = MemSource::new(vec![Some(bad.clone()), Some(bad)]);
        let read = read_range(&src, &mut 0, base, Some(end), 0).await.unwrap();
        assert!(
            read.items
                .iter()
                .any(|i| matches!(i, RangeItem::Bad { .. }))
        );
        assert_eq!(read.unread, None);
    }

    // Proves: when no replica has the range whole, the bad bytes come back as one Bad item
    // (which replay turns into Skipped) and the records around them are kept.
    #[tokio::test]
    async fn corrupt_everywhere_is_reported_bad() {
        let (good, offsets) = chunk(&[100, 200, 300]);
        let mut bad = good.clone();
        bad[offsets[1].0 as usize + 40] ^= 0x55;
        let end = good.len() as u64;
        let src = MemSource::new(vec![Some(bad.clone()), Some(bad)]);
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1, 3]);
        assert!(items.contains(&RangeItem::Bad {
            offset: offsets[1],
            len: offsets[2] - offsets[1],
            tried: 2,
        }));
    }

    // Proves: a bad frame at the very end of a sealed chunk is damage (not a carried tail), and
    // padding is reported as padding.
    #[tokio::test]
    async fn bad_tail_of_the_last_range_is_not_carried() {
        let (mut file, _) = chunk(&[100]);
        encode_padding(&mut file, 64).unwrap();
        let good_end = file.len();
        let mut extra = Vec::new();
        encode_record(
            &mut extra,
            RecordId {
                writer: cairn_record::WriterId(5),
                sequence: 2,
            },
            &[9; 50],
            1 << 20,
        )
        .unwrap();
        file.extend_from_slice(&extra[..40]);
        let end = file.len() as u64;
        let src = MemSource::new(vec![Some(file)]);
        let items = read_all(&src, end).await;
        assert_eq!(sequences(&items), vec![1]);
        assert!(
            items
                .iter()
                .any(|i| matches!(i, RangeItem::Padding { len: 64, .. }))
        );
        assert!(items.contains(&RangeItem::Bad {
            offset: ChunkOffset(good_end as u64),
            len: 40,
            tried: 1,
        }));
    }

    // Proves: bad bytes whose end lies past the range end (a damaged frame header, then a
    // frame cut by the range end) are not reported yet: the next range starts where they do.
    // As the last range, they are one bad range to its end.
    #[test]
    fn bad_bytes_running_past_the_range_start_the_next_one() {
        let (mut file, offsets) = chunk(&[100, 100, 100]);
        file[offsets[1].0 as usize + 24] = 9; // an unknown frame kind
        let buf = Bytes::copy_from_slice(&file[32..offsets[2].0 as usize + 20]);
        match scan(&buf, ChunkOffset::FIRST_FRAME, false) {
            Scan::Items { items, next, bad } => {
                assert_eq!(sequences(&items), vec![1]);
                assert_eq!(next, offsets[1]);
                assert!(!bad);
            }
            other => panic!("{other:?}"),
        }
        match scan(&buf, ChunkOffset::FIRST_FRAME, true) {
            Scan::Items { items, next, bad } => {
                assert_eq!(sequences(&items), vec![1]);
                assert!(items.contains(&RangeItem::Bad {
                    offset: offsets[1],
                    len: ChunkOffset::FIRST_FRAME + buf.len() as u64 - offsets[1],
                    tried: 1
                }));
                assert_eq!(next, ChunkOffset::FIRST_FRAME + buf.len() as u64);
                assert!(bad);
            }
            other => panic!("{other:?}"),
        }
    }

    // Proves: with a frame cut by the range end on one replica and damage before it, the
    // clean carry from the repaired copy is used.
    #[test]
    fn scan_carries_only_a_tail_that_runs_past_the_range() {
        let (file, offsets) = chunk(&[100, 100, 100]);
        let buf = Bytes::copy_from_slice(&file[32..offsets[2].0 as usize + 20]);
        match scan(&buf, ChunkOffset::FIRST_FRAME, false) {
            Scan::Items { items, next, bad } => {
                assert_eq!(sequences(&items), vec![1, 2]);
                assert_eq!(next, offsets[2]);
                assert!(!bad);
            }
            other => panic!("{other:?}"),
        }
        // The same bytes as the last range: the cut frame is damage.
        match scan(&buf, ChunkOffset::FIRST_FRAME, true) {
            Scan::Items { items, next, bad } => {
                assert_eq!(sequences(&items), vec![1, 2]);
                assert_eq!(next, ChunkOffset::FIRST_FRAME + buf.len() as u64);
                assert!(bad);
            }
            other => panic!("{other:?}"),
        }
    }
}
