//! The primary's per-chunk state: writer marks, end offset, full / broken / fenced flags and
//! the commit offset (ARCHITECTURE.md, "Record append", steps 4–6).
//!
//! Everything here is plain synchronous bookkeeping, run under the chunk's lock for a few
//! microseconds per batch: no I/O, no awaits. The service submits the bytes a [`Write`] names
//! to the store and the secondaries while it still holds the lock, so writes reach the local
//! store in offset order, and reports each write's outcome back with [`Primary::complete`] or
//! [`Primary::fail`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

use cairn_record::{
    ChunkHandle, ChunkOffset, ChunkVersion, ScanItem, Scanner, WriterId, WriterMark, encoded_len,
};

use crate::error::{Error, Result};
use crate::limits::WRITER_RECENT_OFFSETS_MAX;

/// An `Append` batch that passed the checks: one writer's data frames with consecutive
/// sequences, covering the whole buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The writer of every record.
    pub(crate) writer: WriterId,
    /// Sequence of the first record; record `i` has `first_sequence + i`.
    pub(crate) first_sequence: u64,
    /// `ends[i]`: where frame `i` ends in the buffer (frame `i` starts at `ends[i - 1]`, or 0).
    pub(crate) ends: Vec<usize>,
    /// `crcs[i]`: the stored frame CRC of record `i` (its first four bytes), the record's
    /// digest: a resent sequence is "already stored" only if the stored frame CRC is the same.
    pub(crate) crcs: Vec<u32>,
}

impl Batch {
    /// Checks `frames` and describes it; the error is a sentence for `INVALID_ARGUMENT`.
    pub(crate) fn parse(
        frames: &[u8],
        payload_bytes_max: usize,
    ) -> std::result::Result<Batch, String> {
        if frames.is_empty() {
            return Err("the batch is empty".into());
        }
        let mut batch = Batch {
            writer: WriterId::default(),
            first_sequence: 0,
            ends: Vec::new(),
            crcs: Vec::new(),
        };
        for item in Scanner::new(frames, 0) {
            match item {
                ScanItem::Record {
                    offset,
                    id,
                    payload,
                } => {
                    if payload.len() > payload_bytes_max {
                        return Err(format!(
                            "record {id} has {} payload bytes, over this chunk's limit of \
                             {payload_bytes_max}",
                            payload.len()
                        ));
                    }
                    if batch.ends.is_empty() {
                        if id.sequence == 0 {
                            return Err(format!("record {id}: sequences start at 1"));
                        }
                        batch.writer = id.writer;
                        batch.first_sequence = id.sequence;
                    } else if id.writer != batch.writer {
                        return Err(format!(
                            "records of two writers ({:016x} and {:016x}) in one batch",
                            batch.writer, id.writer
                        ));
                    } else if batch.first_sequence.checked_add(batch.ends.len() as u64)
                        != Some(id.sequence)
                    {
                        return Err(format!(
                            "record {id} at batch byte {offset} does not follow sequence {}",
                            batch.first_sequence + batch.ends.len() as u64 - 1
                        ));
                    }
                    batch.crcs.push(frame_crc(&frames[offset as usize..]));
                    batch
                        .ends
                        .push(offset as usize + encoded_len(payload.len()));
                }
                ScanItem::Padding { offset, .. } => {
                    return Err(format!(
                        "padding at batch byte {offset}: appends carry data frames only"
                    ));
                }
                ScanItem::Corrupt { offset, len } => {
                    return Err(format!(
                        "batch bytes {offset}..{} are not a valid frame",
                        offset + len
                    ));
                }
            }
        }
        Ok(batch)
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where record `i` starts in the buffer.
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }
}

/// What the primary makes of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Stored (or found stored): answer with `offsets` once `write` is durable everywhere and
    /// the commit offset reached `wait_commit`.
    Admitted(Admitted),
    /// The batch starts past the writer's next sequence; nothing stored.
    OutOfOrder {
        /// The next sequence expected from this writer.
        expected_sequence: u64,
    },
    /// The chunk was already full: nothing stored, no offsets.
    Full,
}

/// A batch the primary took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    /// The chunk became full: some records did not fit (they follow `offsets`).
    pub(crate) full: bool,
    /// One per stored record (duplicates first), in batch order; [`ChunkOffset::ZERO`] for a
    /// duplicate whose offset is forgotten.
    pub(crate) offsets: Vec<ChunkOffset>,
    /// Batch indices of the duplicates whose stored bytes could not be compared with the sent
    /// ones: older than the writer's last [`WRITER_RECENT_OFFSETS_MAX`] records here, or
    /// below the mark carried from an earlier chunk. A record with that writer and sequence
    /// is stored durably; whether it is *this* record is not known, and the answer says so
    /// instead of calling it the same (ARCHITECTURE.md, "Writer identity").
    pub(crate) unverified: Vec<u32>,
    /// Duplicates may still be in flight: answer only once the commit offset reaches this.
    pub(crate) wait_commit: ChunkOffset,
    /// Bytes to write, if any.
    pub(crate) write: Option<Write>,
}

/// One write the primary assigned: a slice of the batch, then optionally padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    /// Where the first byte goes.
    pub(crate) offset: ChunkOffset,
    /// The batch bytes to write (whole frames).
    pub(crate) frames: Range<usize>,
    /// Padding bytes after them, up to the capacity (0 if the chunk did not fill).
    pub(crate) padding_bytes: usize,
}

impl Write {
    /// Total bytes written.
    pub(crate) fn len(&self) -> u64 {
        (self.frames.len() + self.padding_bytes) as u64
    }
}

/// The stored frame CRC of the frame starting at `frame[0]` (FORMAT.md, "Frames": bytes 0..4).
pub(crate) fn frame_crc(frame: &[u8]) -> u32 {
    u32::from_le_bytes(
        frame[..4]
            .try_into()
            .expect("a verified frame is longer than 4 bytes"),
    )
}

/// What a new primary is told about one writer at creation (ARCHITECTURE.md "Seal"): the
/// master's carried mark (its record durable on every replica of an earlier chunk; sequence 0:
/// none known) and the writer's epoch. Not a bare [`WriterMark`]: the epoch comes with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inherited {
    /// The carried mark.
    pub(crate) mark: WriterMark,
    /// The writer's epoch as the master handed it out (0: never resumed).
    pub(crate) epoch: u64,
}

/// One record of a writer stored in this chunk.
#[derive(Clone, Copy, Debug)]
struct Stored {
    offset: ChunkOffset,
    end: ChunkOffset,
    frame_crc: u32,
}

/// Per writer: its epoch, high-water mark in this chunk and its recent records: the primary's
/// live bookkeeping, of which a [`WriterMark`] (a fence's or the master's) is only the last
/// durable record.
#[derive(Debug)]
struct WriterState {
    /// The highest epoch admitted for this writer (appends with a lower one are refused).
    epoch: u64,
    /// Highest sequence assigned in this chunk, or inherited / acknowledged elsewhere.
    mark: u64,
    /// Frame CRC of record `mark` when it is known but not in `recent` (an inherited mark).
    mark_crc: Option<u32>,
    /// Records `mark - recent.len() + 1 ..= mark`, oldest first.
    recent: VecDeque<Stored>,
}

impl WriterState {
    /// Record `sequence` if it is still remembered.
    fn recent(&self, sequence: u64) -> Option<Stored> {
        let first = self.mark + 1 - self.recent.len() as u64;
        if sequence < first || sequence > self.mark {
            return None;
        }
        self.recent.get((sequence - first) as usize).copied()
    }

    fn remember(&mut self, stored: Stored) {
        if self.recent.len() == WRITER_RECENT_OFFSETS_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(stored);
        self.mark += 1;
    }
}

/// The primary's state of one open chunk.
#[derive(Debug)]
pub(crate) struct Primary {
    handle: ChunkHandle,
    version: ChunkVersion,
    /// The largest end (file length) the chunk may reach.
    capacity: ChunkOffset,
    secondaries: Vec<String>,
    inherited: HashMap<WriterId, Inherited>,
    writers: HashMap<WriterId, WriterState>,
    /// Where the next write goes: the end of everything assigned so far.
    end: ChunkOffset,
    full: bool,
    broken: bool,
    fenced: bool,
    /// Writes not yet durable everywhere, by offset.
    in_flight: BTreeMap<ChunkOffset, InFlight>,
    commit: ChunkOffset,
}

/// A write assigned but not yet durable everywhere, or durable but behind one that is not.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// Where the write ends.
    end: ChunkOffset,
    /// Durable on every replica.
    done: bool,
}

impl Primary {
    /// The state of a new, empty chunk.
    pub(crate) fn new(
        handle: ChunkHandle,
        version: ChunkVersion,
        capacity: u64,
        secondaries: Vec<String>,
        inherited: HashMap<WriterId, Inherited>,
    ) -> Primary {
        let empty = ChunkOffset::FIRST_FRAME;
        Primary {
            handle,
            version,
            capacity: ChunkOffset(capacity),
            secondaries,
            inherited,
            writers: HashMap::new(),
            end: empty,
            full: false,
            broken: false,
            fenced: false,
            in_flight: BTreeMap::new(),
            commit: empty,
        }
    }

    /// The secondaries' addresses.
    pub(crate) fn secondaries(&self) -> &[String] {
        &self.secondaries
    }

    /// The chunk version appends must carry.
    pub(crate) fn version(&self) -> ChunkVersion {
        self.version
    }

    /// The end of everything assigned so far (the capacity once the chunk is full).
    pub(crate) fn end(&self) -> ChunkOffset {
        self.end
    }

    /// The end of the longest prefix durable on every replica.
    pub(crate) fn commit(&self) -> ChunkOffset {
        self.commit
    }

    /// Whether no more appends can be acknowledged here (broken or fenced).
    pub(crate) fn closed(&self) -> bool {
        self.broken || self.fenced
    }

    /// Refuses appends from now on (the master is sealing the chunk), and freezes the commit
    /// offset the fence reports (`Node::fence`).
    pub(crate) fn fence(&mut self) {
        self.fenced = true;
    }

    /// Fenced by the master: nothing more is committed or acknowledged.
    pub(crate) fn fenced(&self) -> bool {
        self.fenced
    }

    /// Decides what to do with `batch` of a writer at `epoch` and, if it writes, reserves its
    /// bytes. A refusal (an error, `OutOfOrder`, `Full`) changes nothing.
    pub(crate) fn admit(
        &mut self,
        version: ChunkVersion,
        batch: &Batch,
        acked_through: u64,
        epoch: u64,
    ) -> Result<Admission> {
        let handle = self.handle;
        if version != self.version {
            return Err(Error::StaleVersion {
                handle,
                have: self.version,
                got: version,
            });
        }
        if self.fenced {
            return Err(Error::Fenced { handle });
        }
        if self.broken {
            return Err(Error::Broken { handle });
        }
        let writer = batch.writer;
        let first = batch.first_sequence;
        if acked_through >= first {
            // Records at or below `acked_through` would be taken as stored before: refusing
            // keeps a lying or confused writer from having a record acknowledged unstored.
            return Err(Error::InvalidBatch {
                handle,
                reason: format!(
                    "writer {writer:016x}: acked_through {acked_through} is not below the \
                     batch's first sequence {first} (a batch carries only records not yet \
                     acknowledged)"
                ),
            });
        }
        let inherited = self.inherited.get(&writer).copied().unwrap_or_default();
        let known = self.writers.get(&writer);
        let current = known.map_or(inherited.epoch, |w| w.epoch);
        if epoch < current {
            return Err(Error::WriterFenced {
                handle,
                writer,
                epoch,
                current,
            });
        }
        if self.full {
            return Ok(Admission::Full);
        }
        // The writer's mark as it would be with this batch: the records up to `acked_through`
        // were acknowledged (so stored durably on every replica of some chunk) even if this
        // chunk never saw them.
        let (mut mark, mut mark_crc) = match known {
            Some(w) => (w.mark, w.mark_crc),
            None => (inherited.mark.sequence, inherited.mark.known_crc()),
        };
        let raised = acked_through > mark;
        if raised {
            mark = acked_through;
            mark_crc = None;
        }
        if first > mark + 1 {
            return Ok(Admission::OutOfOrder {
                expected_sequence: mark + 1,
            });
        }
        let n = batch.len();
        let dups = ((mark + 1 - first) as usize).min(n);
        let mut offsets = Vec::with_capacity(n);
        let mut unverified = Vec::new();
        let mut wait_commit = ChunkOffset::ZERO;
        for i in 0..dups {
            let sequence = first + i as u64;
            let crc = batch.crcs[i];
            let stored = known.filter(|_| !raised).and_then(|w| w.recent(sequence));
            let same = match (stored, sequence == mark) {
                (Some(s), _) => Some(s.frame_crc == crc),
                (None, true) => mark_crc.map(|m| m == crc),
                (None, false) => None,
            };
            match (same, stored) {
                (Some(false), _) => {
                    return Err(Error::WriterConflict {
                        handle,
                        writer,
                        sequence,
                    });
                }
                (_, Some(s)) => {
                    offsets.push(s.offset);
                    wait_commit = wait_commit.max(s.end);
                }
                (same, None) => {
                    // Stored before, at an offset this primary no longer knows (or in an
                    // earlier chunk). If it is in this chunk it lies below the current end.
                    // Unless it is the carried mark with a matching CRC, its bytes were not
                    // compared, and the answer says so.
                    if same.is_none() {
                        unverified.push(i as u32);
                    }
                    offsets.push(ChunkOffset::ZERO);
                    wait_commit = wait_commit.max(self.end);
                }
            }
        }
        // Every check passed: from here on the batch is taken.
        let w = self.writers.entry(writer).or_insert_with(|| WriterState {
            epoch,
            mark: inherited.mark.sequence,
            mark_crc: inherited.mark.known_crc(),
            recent: VecDeque::new(),
        });
        w.epoch = epoch;
        if raised {
            w.mark = mark;
            w.mark_crc = None;
            w.recent.clear();
        }
        // The longest prefix of the new records that fits under the capacity.
        let start = batch.start(dups);
        let room = self.capacity - self.end;
        let mut stored = dups;
        while stored < n && (batch.ends[stored] - start) as u64 <= room {
            stored += 1;
        }
        let frames = start..batch.start(stored);
        let full = stored < n;
        let padding_bytes = if full {
            (room - frames.len() as u64) as usize
        } else {
            0
        };
        for i in dups..stored {
            let offset = self.end + (batch.start(i) - start) as u64;
            let end = self.end + (batch.ends[i] - start) as u64;
            w.remember(Stored {
                offset,
                end,
                frame_crc: batch.crcs[i],
            });
            offsets.push(offset);
        }
        let write = Write {
            offset: self.end,
            frames,
            padding_bytes,
        };
        let write = (write.len() > 0).then(|| {
            let end = self.end + write.len();
            self.in_flight
                .insert(self.end, InFlight { end, done: false });
            self.end = end;
            write
        });
        self.full = full;
        assert!(self.end <= self.capacity, "assigned past the capacity");
        Ok(Admission::Admitted(Admitted {
            full,
            offsets,
            unverified,
            wait_commit,
            write,
        }))
    }

    /// The write at `offset` is durable on every replica. Returns the new commit offset if it
    /// grew.
    pub(crate) fn complete(&mut self, offset: ChunkOffset) -> Option<ChunkOffset> {
        self.in_flight
            .get_mut(&offset)
            .expect("completed a write that was assigned")
            .done = true;
        let before = self.commit;
        while let Some(e) = self.in_flight.first_entry() {
            let InFlight { end, done } = *e.get();
            if !done {
                break;
            }
            assert_eq!(*e.key(), self.commit, "writes are contiguous");
            e.remove();
            self.commit = end;
        }
        (self.commit > before).then_some(self.commit)
    }

    /// A write failed somewhere: the chunk acknowledges nothing more. The commit offset stays
    /// below the failed write for good.
    pub(crate) fn fail(&mut self) {
        self.broken = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{RecordId, encode_record};

    const H: ChunkHandle = ChunkHandle(7);

    /// Offsets as the primary answers them.
    fn offsets(offsets: &[u64]) -> Vec<ChunkOffset> {
        offsets.iter().copied().map(ChunkOffset).collect()
    }

    fn frames(writer: u64, sequences: std::ops::RangeInclusive<u64>, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for sequence in sequences {
            let id = RecordId {
                writer: WriterId(writer),
                sequence,
            };
            encode_record(&mut out, id, &vec![1u8; len], 1 << 20).unwrap();
        }
        out
    }

    fn batch(writer: u64, sequences: std::ops::RangeInclusive<u64>, len: usize) -> Batch {
        Batch::parse(&frames(writer, sequences, len), 1 << 20).unwrap()
    }

    /// What a new primary inherits for `writer`: its record `sequence` as `frames` encodes it.
    fn inherit(writer: u64, sequence: u64, epoch: u64) -> Inherited {
        let f = frames(writer, sequence..=sequence, 8);
        Inherited {
            mark: WriterMark {
                writer: WriterId(writer),
                sequence,
                frame_crc: frame_crc(&f),
            },
            epoch,
        }
    }

    fn admitted(a: Admission) -> Admitted {
        match a {
            Admission::Admitted(a) => a,
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn parse_refuses_mixed_writers_gaps_padding_garbage_and_oversized_records() {
        let mut two = frames(1, 1..=2, 8);
        two.extend(frames(2, 3..=3, 8));
        assert!(
            Batch::parse(&two, 1 << 20)
                .unwrap_err()
                .contains("two writers")
        );
        let mut gap = frames(1, 1..=1, 8);
        gap.extend(frames(1, 3..=3, 8));
        assert!(Batch::parse(&gap, 1 << 20).unwrap_err().contains("follow"));
        let mut pad = frames(1, 1..=1, 8);
        cairn_record::encode_padding(&mut pad, 64).unwrap();
        assert!(Batch::parse(&pad, 1 << 20).unwrap_err().contains("padding"));
        assert!(
            Batch::parse(&[0xAB; 64], 1 << 20)
                .unwrap_err()
                .contains("valid frame")
        );
        let mut torn = frames(1, 1..=2, 8);
        torn.truncate(torn.len() - 8);
        assert!(Batch::parse(&torn, 1 << 20).is_err());
        assert!(
            Batch::parse(&frames(1, 1..=1, 100), 64)
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            Batch::parse(&frames(1, 0..=0, 8), 64)
                .unwrap_err()
                .contains("start at 1")
        );
        assert!(Batch::parse(&[], 64).is_err());
        let b = batch(5, 3..=5, 8);
        assert_eq!((b.writer, b.first_sequence, b.len()), (WriterId(5), 3, 3));
        assert_eq!(b.ends, vec![40, 80, 120]);
    }

    #[test]
    fn writer_marks_give_offsets_duplicates_and_out_of_order() {
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), HashMap::new());
        let a = admitted(p.admit(ChunkVersion(1), &batch(9, 1..=2, 8), 0, 0).unwrap());
        assert_eq!(a.offsets, offsets(&[32, 72]));
        assert_eq!(a.write.clone().unwrap().frames, 0..80);
        // A gap: the next expected is 3.
        assert_eq!(
            p.admit(ChunkVersion(1), &batch(9, 5..=5, 8), 0, 0).unwrap(),
            Admission::OutOfOrder {
                expected_sequence: 3
            }
        );
        // A retry of 2..=3: 2 is a duplicate (offset known, still in flight), 3 is new.
        let b = admitted(p.admit(ChunkVersion(1), &batch(9, 2..=3, 8), 0, 0).unwrap());
        assert_eq!(b.offsets, offsets(&[72, 112]));
        assert_eq!(b.wait_commit, ChunkOffset(112));
        assert_eq!(b.write.clone().unwrap().frames, 40..80);
        // Completions out of order: the commit offset waits for the first.
        assert_eq!(p.complete(ChunkOffset(112)), None);
        assert_eq!(p.commit(), ChunkOffset(32));
        assert_eq!(p.complete(ChunkOffset(32)), Some(ChunkOffset(152)));
        // Stale version.
        assert!(matches!(
            p.admit(ChunkVersion(2), &batch(9, 4..=4, 8), 0, 0),
            Err(Error::StaleVersion { .. })
        ));
    }

    #[test]
    fn inherited_marks_and_acked_through_start_a_new_writer() {
        let inherited = HashMap::from([(WriterId(9), inherit(9, 10, 0))]);
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), inherited);
        let a = admitted(
            p.admit(ChunkVersion(1), &batch(9, 9..=11, 8), 0, 0)
                .unwrap(),
        );
        assert_eq!(a.offsets, offsets(&[0, 0, 32]));
        // Nothing of this chunk was below them: the (empty) chunk's end is committed.
        assert_eq!(a.wait_commit, ChunkOffset(32));
        // Another writer, unseen, whose records up to 4 were acknowledged elsewhere.
        assert_eq!(
            p.admit(ChunkVersion(1), &batch(3, 6..=6, 8), 4, 0).unwrap(),
            Admission::OutOfOrder {
                expected_sequence: 5
            }
        );
        let b = admitted(p.admit(ChunkVersion(1), &batch(3, 5..=5, 8), 4, 0).unwrap());
        assert_eq!(b.offsets, offsets(&[72]));
    }

    #[test]
    fn a_batch_that_does_not_fit_stores_a_prefix_and_pads_to_the_capacity() {
        // Capacity 32 + 3 frames of 40 bytes + 16: two more frames fit, not three.
        let cap = 32 + 3 * 40 + 16;
        let mut p = Primary::new(H, ChunkVersion(1), cap, Vec::new(), HashMap::new());
        admitted(p.admit(ChunkVersion(1), &batch(1, 1..=1, 8), 0, 0).unwrap());
        let a = admitted(p.admit(ChunkVersion(1), &batch(1, 2..=4, 8), 0, 0).unwrap());
        assert!(a.full);
        assert_eq!(a.offsets, offsets(&[72, 112]));
        let w = a.write.unwrap();
        assert_eq!(w.frames, 0..80);
        assert_eq!(w.offset + w.len(), ChunkOffset(cap));
        assert_eq!(w.padding_bytes, 16);
        assert_eq!(
            p.admit(ChunkVersion(1), &batch(1, 4..=4, 8), 0, 0).unwrap(),
            Admission::Full
        );
    }

    #[test]
    fn a_broken_or_fenced_chunk_refuses_appends() {
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), HashMap::new());
        admitted(p.admit(ChunkVersion(1), &batch(1, 1..=1, 8), 0, 0).unwrap());
        p.fail();
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(1, 2..=2, 8), 0, 0),
            Err(Error::Broken { .. })
        ));
        let mut q = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), HashMap::new());
        q.fence();
        assert!(matches!(
            q.admit(ChunkVersion(1), &batch(1, 1..=1, 8), 0, 0),
            Err(Error::Fenced { .. })
        ));
    }

    // Proves (issue 8 item 10): a resend older than the writer's remembered records is
    // answered with offset 0 *and named unverified* (its bytes were not compared), even with
    // another payload, while a remembered one is compared; nothing is written either way.
    #[test]
    fn forgotten_duplicates_answer_zero_unverified_and_wait_for_the_end() {
        let mut p = Primary::new(H, ChunkVersion(1), 1 << 30, Vec::new(), HashMap::new());
        let n = WRITER_RECENT_OFFSETS_MAX as u64 + 10;
        admitted(p.admit(ChunkVersion(1), &batch(1, 1..=n, 0), 0, 0).unwrap());
        let a = admitted(p.admit(ChunkVersion(1), &batch(1, 1..=2, 0), 0, 0).unwrap());
        assert_eq!(a.offsets, offsets(&[0, 0]));
        assert_eq!(a.unverified, vec![0, 1]);
        assert_eq!(a.wait_commit, ChunkOffset(32 + n * 32));
        assert!(a.write.is_none());
        // Another payload under a forgotten sequence: still "unverified", never "the same".
        let b = admitted(p.admit(ChunkVersion(1), &batch(1, 3..=3, 8), 0, 0).unwrap());
        assert_eq!(
            (b.offsets, b.unverified),
            (vec![ChunkOffset::ZERO], vec![0])
        );
        // The last remembered ones are compared: same bytes, real offsets, nothing unverified.
        let c = admitted(p.admit(ChunkVersion(1), &batch(1, n..=n, 0), 0, 0).unwrap());
        assert_eq!(c.offsets, offsets(&[32 + (n - 1) * 32]));
        assert!(c.unverified.is_empty());
        assert_eq!(p.end(), ChunkOffset(32 + n * 32));
    }

    // Proves (issue 8 item 10): a resent sequence is "already stored" only when the stored
    // record has the same frame CRC; another payload under the same (writer, sequence) is
    // refused with a conflict naming both, and the refusal changes nothing.
    #[test]
    fn a_different_record_under_a_stored_sequence_is_refused() {
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), HashMap::new());
        let a = admitted(p.admit(ChunkVersion(1), &batch(9, 1..=1, 8), 0, 0).unwrap());
        assert_eq!(a.offsets, offsets(&[32]));
        let end = p.end();
        // Another process with the same writer id, its own sequence 1 (another payload).
        match p.admit(ChunkVersion(1), &batch(9, 1..=1, 16), 0, 0) {
            Err(Error::WriterConflict {
                writer: WriterId(9),
                sequence: 1,
                ..
            }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
        // A batch whose first record is the same but the second differs: refused too.
        let mut mixed = frames(9, 1..=1, 8);
        mixed.extend(frames(9, 2..=2, 8));
        admitted(
            p.admit(
                ChunkVersion(1),
                &Batch::parse(&mixed, 1 << 20).unwrap(),
                0,
                0,
            )
            .unwrap(),
        );
        let mut other = frames(9, 1..=1, 8);
        other.extend(frames(9, 2..=2, 24));
        assert!(matches!(
            p.admit(
                ChunkVersion(1),
                &Batch::parse(&other, 1 << 20).unwrap(),
                0,
                0
            ),
            Err(Error::WriterConflict { sequence: 2, .. })
        ));
        // The same records again: answered with their offsets, nothing written.
        let same = admitted(p.admit(ChunkVersion(1), &batch(9, 1..=2, 8), 0, 0).unwrap());
        assert_eq!(same.offsets, offsets(&[32, 72]));
        assert!(same.write.is_none());
        assert_eq!(p.end(), end + 40);
    }

    // Proves: the record an inherited mark names is verified by its frame CRC after a roll.
    #[test]
    fn an_inherited_mark_is_verified_by_its_frame_crc() {
        let inherited = HashMap::from([(WriterId(9), inherit(9, 10, 0))]);
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), inherited);
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(9, 10..=10, 16), 0, 0),
            Err(Error::WriterConflict { sequence: 10, .. })
        ));
        assert!(p.writers.is_empty(), "a refused batch registers nothing");
        let a = admitted(
            p.admit(ChunkVersion(1), &batch(9, 10..=11, 8), 0, 0)
                .unwrap(),
        );
        assert_eq!(a.offsets, offsets(&[0, 32]));
        assert!(a.unverified.is_empty(), "the carried mark was compared");
        // Below the carried mark nothing can be compared: answered as unverified.
        let b = admitted(p.admit(ChunkVersion(1), &batch(9, 9..=9, 8), 0, 0).unwrap());
        assert_eq!(
            (b.offsets, b.unverified),
            (vec![ChunkOffset::ZERO], vec![0])
        );
    }

    // Proves: an acked_through at or above the batch's first sequence (which would have
    // answered unstored records "already stored") is refused, and refused or out-of-order
    // batches register nothing: the writer's next batch is judged as if they never came.
    #[test]
    fn impossible_acked_through_and_refused_batches_change_nothing() {
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), HashMap::new());
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(5, 1..=2, 8), 1, 0),
            Err(Error::InvalidBatch { .. })
        ));
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(5, 3..=3, 8), 7, 0),
            Err(Error::InvalidBatch { .. })
        ));
        assert_eq!(
            p.admit(ChunkVersion(1), &batch(5, 3..=3, 8), 0, 0).unwrap(),
            Admission::OutOfOrder {
                expected_sequence: 1
            }
        );
        assert!(p.writers.is_empty());
        assert_eq!(p.end(), ChunkOffset(32));
        let a = admitted(p.admit(ChunkVersion(1), &batch(5, 1..=1, 8), 0, 0).unwrap());
        assert_eq!(a.offsets, offsets(&[32]));
        // Acknowledged elsewhere (the chunk before): the mark moves up, nothing is dropped.
        let b = admitted(p.admit(ChunkVersion(1), &batch(5, 4..=4, 8), 3, 0).unwrap());
        assert_eq!(b.offsets, offsets(&[72]));
    }

    // Proves: epochs fence older incarnations. A higher epoch is adopted when its batch is
    // admitted (and its resent records are verified against the stored ones); lower epochs,
    // including a never-resumed 0, are refused from then on; an epoch learnt at creation
    // (from the master) fences from the first append.
    #[test]
    fn older_epochs_of_a_writer_are_fenced() {
        let inherited = HashMap::from([(WriterId(4), inherit(4, 0, 3))]);
        let mut p = Primary::new(H, ChunkVersion(1), 4096, Vec::new(), inherited);
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(4, 1..=1, 8), 0, 2),
            Err(Error::WriterFenced {
                epoch: 2,
                current: 3,
                ..
            })
        ));
        assert!(p.writers.is_empty());
        admitted(p.admit(ChunkVersion(1), &batch(4, 1..=2, 8), 0, 3).unwrap());
        // Incarnation 4 resumes from sequence 1 and re-sends the same records.
        let again = admitted(p.admit(ChunkVersion(1), &batch(4, 1..=3, 8), 0, 4).unwrap());
        assert_eq!(again.offsets, offsets(&[32, 72, 112]));
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(4, 3..=3, 8), 2, 3),
            Err(Error::WriterFenced { current: 4, .. })
        ));
        assert!(matches!(
            p.admit(ChunkVersion(1), &batch(4, 4..=4, 8), 3, 0),
            Err(Error::WriterFenced { .. })
        ));
        admitted(p.admit(ChunkVersion(1), &batch(4, 4..=4, 8), 3, 4).unwrap());
    }
}
