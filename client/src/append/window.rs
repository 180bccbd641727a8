//! The appender's pure state: queued records, batches and the in-flight window, with no I/O.
//!
//! Records get sequences 1, 2, 3, … as they are pushed. Batches are built from the queue in
//! sequence order, sent through a cursor (go-back-N) and kept until every record in them and
//! before them is acknowledged, so any of them can be resent:
//! - a new location (after a seal) starts a new *generation*: the cursor goes back to the first
//!   unacknowledged batch and every held batch is resent in order, on the new chunk;
//! - `OUT_OF_ORDER` from the current generation stops new sends until the generation's other
//!   sends are answered, then moves the cursor back to the batch holding the expected sequence;
//! - a stored answer (`OK`, or the prefix of `CHUNK_FULL`) acknowledges records whatever the
//!   generation, since a primary answers only once every replica holds them durably.
//!
//! A duplicate the primary could not compare (`unverified`: a record with that writer and
//! sequence is stored, but older than the primary remembers) acknowledges the record only if
//! this appender may have stored it itself: its batch was sent in an earlier generation, whose
//! answer never came or came as a failure. Otherwise the record was stored by someone else
//! (an earlier incarnation of a resumed writer, or another process misusing its id) and may
//! differ: the record fails with [`crate::Error::UnverifiedDuplicate`] instead of being
//! called stored.
//!
//! Sending only from the cursor keeps each generation's sends in sequence order; resending
//! from the first unacknowledged record means a chunk never sees a gap it cannot fill.

use std::collections::VecDeque;

use bytes::Bytes;
use cairn_proto::v1::SealReason;
use cairn_record::frame::encoded_len;
use cairn_record::{ChunkOffset, RecordId, WriterId, encode_record};

use crate::append::AppendAck;
use crate::limits::{
    BATCH_BYTES_MAX, BATCH_RECORDS_MAX, BATCHES_IN_FLIGHT_MAX, PIPELINE_BATCH_BYTES_MIN,
    WINDOW_GROW_AFTER_BATCHES,
};

/// One `Append` RPC to make.
#[derive(Clone, Debug)]
pub(crate) struct Send {
    /// What the answer must be matched with.
    pub(crate) meta: SendMeta,
    /// The batch's encoded frames, built once.
    pub(crate) frames: Bytes,
    /// Highest h with every record <= h acknowledged.
    pub(crate) acked_through: u64,
}

/// The identity of a send, returned with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendMeta {
    /// The generation (location) it was sent in.
    pub(crate) generation: u64,
    /// Sequence of its first record.
    pub(crate) first_seq: u64,
    /// Records in it.
    pub(crate) count: usize,
    /// Index of the chunk it was sent to.
    pub(crate) chunk: u32,
    /// The batch went out before, in a generation that ended without its answer: this
    /// appender may have stored its records already.
    pub(crate) resend: bool,
}

/// What an `Append` RPC came back with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The first `offsets.len()` records are stored (offset 0: stored before, place unknown).
    /// `full`: the primary answered `CHUNK_FULL`; the rest must go to the next chunk.
    Stored {
        /// One per stored record, in batch order.
        offsets: Vec<ChunkOffset>,
        /// Indices (in the batch) of duplicates whose bytes the primary could not compare.
        unverified: Vec<u32>,
        /// The chunk is full.
        full: bool,
    },
    /// Nothing stored; the primary expects `expected` first.
    OutOfOrder {
        /// The next sequence the primary expects from this writer.
        expected: u64,
    },
    /// The append failed (retryable): seal the chunk and resend on the next one.
    Failed {
        /// Why, for the master.
        reason: SealReason,
        /// The chunk was fenced (a stale version): someone else's seal moved the log on. That
        /// is not counted as a failed attempt.
        fenced: bool,
        /// Free text for the master's log and for the error if retries run out.
        detail: String,
    },
}

/// Whatever waits for one record's acknowledgement.
pub(crate) trait Waiter {
    /// Delivers the result.
    fn complete(self, result: crate::Result<AppendAck>);
}

struct Batch<W> {
    first_seq: u64,
    frames: Bytes,
    /// End of each record's frame within `frames`.
    ends: Vec<usize>,
    /// `None` once the record is acknowledged.
    waiters: Vec<Option<W>>,
    /// Sent in a generation that ended before all of it was answered (see [`SendMeta::resend`]).
    sent_before: bool,
}

impl<W> Batch<W> {
    fn len(&self) -> usize {
        self.waiters.len()
    }

    fn end_seq(&self) -> u64 {
        self.first_seq + self.len() as u64
    }

    /// Drops the first `k` records (already acknowledged) without copying the frames.
    fn trim_front(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        let cut = self.ends[k - 1];
        self.frames = self.frames.slice(cut..);
        self.ends.drain(..k);
        for end in &mut self.ends {
            *end -= cut;
        }
        self.waiters.drain(..k);
        self.first_seq += k as u64;
    }
}

/// The appender's batches and window. `W` is whatever waits for a record (a oneshot sender in
/// the appender, a plain value in tests).
pub(crate) struct Window<W> {
    writer: WriterId,
    payload_max: usize,
    batch_bytes_max: usize,
    /// Records not yet in a batch; the first has sequence `queue_first_seq`.
    queue: VecDeque<(Bytes, W)>,
    queue_first_seq: u64,
    /// Encoded size of the queued records.
    queue_bytes: usize,
    /// Contiguous in sequence, ending at `queue_first_seq`.
    batches: VecDeque<Batch<W>>,
    generation: u64,
    /// Chunk index of the current generation; `None` until a location is known.
    chunk: Option<u32>,
    /// Index in `batches` of the next batch to send in this generation.
    cursor: usize,
    /// Sends of the current generation not yet answered.
    in_flight: usize,
    /// Records in those sends.
    in_flight_records: usize,
    /// Sends allowed in flight now (1..=BATCHES_IN_FLIGHT_MAX).
    window: usize,
    /// Batches stored in order since the window last changed.
    in_order: u32,
    /// Set by `OUT_OF_ORDER`: resend from this sequence once the window drains.
    rewind_from: Option<u64>,
    /// A seal was asked for in the current generation (sending stops until a new location).
    sealing: bool,
    seal_wanted: Option<(SealReason, String)>,
}

impl<W: Waiter> Window<W> {
    /// An empty window for `writer` on a log whose records may be at most `payload_max` bytes
    /// and whose chunks hold `chunk_bytes`; its first record gets sequence `first_sequence`
    /// (records before it count as acknowledged).
    pub(crate) fn new(
        writer: WriterId,
        payload_max: usize,
        chunk_bytes: u64,
        first_sequence: u64,
    ) -> Window<W> {
        assert!(first_sequence >= 1, "sequences start at 1");
        // Batches of at most an eighth of a chunk: a full chunk then wastes at most one chunk's
        // worth of resends across the whole window.
        let batch_bytes_max = BATCH_BYTES_MAX.min((chunk_bytes / 8) as usize).max(1);
        Window {
            writer,
            payload_max,
            batch_bytes_max,
            queue: VecDeque::new(),
            queue_first_seq: first_sequence,
            queue_bytes: 0,
            batches: VecDeque::new(),
            generation: 0,
            chunk: None,
            cursor: 0,
            in_flight: 0,
            in_flight_records: 0,
            window: 1,
            in_order: 0,
            rewind_from: None,
            sealing: false,
            seal_wanted: None,
        }
    }

    /// Queues a record, giving it the next sequence. The caller checked its size.
    pub(crate) fn push(&mut self, payload: Bytes, waiter: W) -> RecordId {
        assert!(payload.len() <= self.payload_max, "caller checks the limit");
        let sequence = self.queue_first_seq + self.queue.len() as u64;
        self.queue_bytes += encoded_len(payload.len());
        self.queue.push_back((payload, waiter));
        RecordId {
            writer: self.writer,
            sequence,
        }
    }

    /// Records queued and not yet in a batch.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The highest sequence pushed so far (0 if none).
    pub(crate) fn last_seq(&self) -> u64 {
        self.queue_first_seq + self.queue.len() as u64 - 1
    }

    /// The lowest sequence not yet acknowledged or failed, if any.
    pub(crate) fn lowest_unresolved(&self) -> Option<u64> {
        match self.batches.front() {
            Some(b) => Some(b.first_seq),
            None if !self.queue.is_empty() => Some(self.queue_first_seq),
            None => None,
        }
    }

    /// Highest h with every record <= h acknowledged.
    pub(crate) fn acked_through(&self) -> u64 {
        self.lowest_unresolved()
            .unwrap_or(self.queue_first_seq)
            .saturating_sub(1)
    }

    /// Nothing queued or unacknowledged.
    pub(crate) fn is_empty(&self) -> bool {
        self.lowest_unresolved().is_none()
    }

    /// Whether records wait and no location is known.
    pub(crate) fn needs_location(&self) -> bool {
        self.chunk.is_none() && !self.is_empty()
    }

    /// The seal to ask for, once per generation.
    pub(crate) fn take_seal(&mut self) -> Option<(SealReason, String)> {
        self.seal_wanted.take()
    }

    /// A seal was asked for in the current generation: later failures are the same event.
    pub(crate) fn sealing(&self) -> bool {
        self.sealing
    }

    /// The current generation (0 before the first location).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends of the current generation not yet answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Opens the window fully (tests of the pipelined paths).
    #[cfg(test)]
    pub(crate) fn open_window(&mut self) {
        self.window = BATCHES_IN_FLIGHT_MAX;
    }

    /// A new location (first open, or after a seal): a new generation that resends every held
    /// batch in order.
    pub(crate) fn set_location(&mut self, chunk: u32) {
        // Every batch the ending generation sent may have been stored by it.
        for b in self.batches.iter_mut().take(self.cursor) {
            b.sent_before = true;
        }
        self.generation += 1;
        self.chunk = Some(chunk);
        self.cursor = 0;
        self.in_flight = 0;
        self.in_flight_records = 0;
        self.rewind_from = None;
        self.sealing = false;
        self.seal_wanted = None;
    }

    /// The next send, if the window has room and something is to be sent.
    pub(crate) fn next_send(&mut self) -> Option<Send> {
        let chunk = self.chunk?;
        if self.sealing || self.in_flight >= self.window {
            return None;
        }
        if let Some(expected) = self.rewind_from {
            // "After the earlier ones are acknowledged": let the generation drain first.
            if self.in_flight > 0 {
                return None;
            }
            self.rewind_from = None;
            self.cursor = self
                .batches
                .iter()
                .position(|b| expected < b.end_seq())
                .unwrap_or(self.batches.len());
        }
        if self.cursor == self.batches.len() {
            // A new batch: while others are in flight, only one worth its own RPC (many
            // small RPCs cost more than the fsync they would share): more records than are in
            // flight (so that two equal halves merge back into one batch), or enough bytes.
            if self.queue.is_empty()
                || (self.in_flight > 0
                    && self.queue.len() <= self.in_flight_records
                    && self.queue_bytes < PIPELINE_BATCH_BYTES_MIN)
            {
                return None;
            }
            let batch = self.build_batch();
            self.batches.push_back(batch);
        }
        let acked_through = self.acked_through();
        let b = &self.batches[self.cursor];
        self.cursor += 1;
        self.in_flight += 1;
        self.in_flight_records += b.len();
        Some(Send {
            meta: SendMeta {
                generation: self.generation,
                first_seq: b.first_seq,
                count: b.len(),
                chunk,
                resend: b.sent_before,
            },
            frames: b.frames.clone(),
            acked_through,
        })
    }

    /// Takes queued records into one batch, encoding each frame once.
    fn build_batch(&mut self) -> Batch<W> {
        let mut count = 0;
        let mut bytes = 0;
        for (payload, _) in &self.queue {
            let len = encoded_len(payload.len());
            if count == BATCH_RECORDS_MAX || (count > 0 && bytes + len > self.batch_bytes_max) {
                break;
            }
            count += 1;
            bytes += len;
        }
        let first_seq = self.queue_first_seq;
        let mut frames = Vec::with_capacity(bytes);
        let mut ends = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(count);
        for (i, (payload, waiter)) in self.queue.drain(..count).enumerate() {
            let id = RecordId {
                writer: self.writer,
                sequence: first_seq + i as u64,
            };
            encode_record(&mut frames, id, &payload, self.payload_max)
                .expect("the size was checked by append and the writer id is non-zero");
            ends.push(frames.len());
            waiters.push(Some(waiter));
        }
        assert_eq!(frames.len(), bytes, "encoded_len predicts the frame size");
        self.queue_first_seq += count as u64;
        self.queue_bytes -= bytes;
        Batch {
            first_seq,
            frames: Bytes::from(frames),
            ends,
            waiters,
            sent_before: false,
        }
    }

    /// Applies an outcome. Returns the records it resolved: acknowledged, or failed as
    /// unverified duplicates of a record someone else stored.
    pub(crate) fn on_outcome(
        &mut self,
        meta: SendMeta,
        outcome: Outcome,
    ) -> Vec<(W, crate::Result<AppendAck>)> {
        let current = meta.generation == self.generation;
        if current {
            assert!(self.in_flight > 0, "an answer matches a send");
            self.in_flight -= 1;
            self.in_flight_records -= meta.count;
        }
        let mut acked = Vec::new();
        match outcome {
            Outcome::Stored {
                offsets,
                full,
                unverified,
            } if offsets.len() > meta.count
                || (!full && offsets.len() != meta.count)
                || unverified
                    .iter()
                    .any(|&i| offsets.get(i as usize) != Some(&ChunkOffset::ZERO)) =>
            {
                if current {
                    self.want_seal(
                        SealReason::AppendFailed,
                        format!(
                            "primary answered {} offsets for a batch of {} ({} unverified, \
                             each must be a duplicate at offset 0)",
                            offsets.len(),
                            meta.count,
                            unverified.len()
                        ),
                    );
                }
            }
            Outcome::Stored {
                offsets,
                full,
                unverified,
            } => {
                if current && !full {
                    self.in_order += 1;
                    if self.in_order >= WINDOW_GROW_AFTER_BATCHES {
                        self.window = (self.window + 1).min(BATCHES_IN_FLIGHT_MAX);
                        self.in_order = 0;
                    }
                }
                for (i, &offset) in offsets.iter().enumerate() {
                    let foreign = !meta.resend && unverified.contains(&(i as u32));
                    self.ack(
                        meta.first_seq + i as u64,
                        meta.chunk,
                        offset,
                        foreign,
                        &mut acked,
                    );
                }
                if full && current {
                    self.want_seal(SealReason::ChunkFull, "chunk full".into());
                }
            }
            Outcome::OutOfOrder { expected } if current => {
                if self.rewind_from.is_none() {
                    self.window = (self.window / 2).max(1);
                    self.in_order = 0;
                }
                let from = self.rewind_from.map_or(expected, |r| r.min(expected));
                self.rewind_from = Some(from);
            }
            Outcome::Failed { reason, detail, .. } if current => self.want_seal(reason, detail),
            // An old generation's refusals say nothing about the current chunk.
            Outcome::OutOfOrder { .. } | Outcome::Failed { .. } => {}
        }
        self.drop_acked_head();
        acked
    }

    fn want_seal(&mut self, reason: SealReason, detail: String) {
        if !self.sealing {
            self.sealing = true;
            self.seal_wanted = Some((reason, detail));
        }
    }

    /// Resolves record `seq`: acknowledged at `offset` (0: place unknown), or, when `foreign`
    /// (an unverified duplicate this appender cannot have stored), failed.
    fn ack(
        &mut self,
        seq: u64,
        chunk: u32,
        offset: ChunkOffset,
        foreign: bool,
        acked: &mut Vec<(W, crate::Result<AppendAck>)>,
    ) {
        let i = self.batches.partition_point(|b| b.end_seq() <= seq);
        let Some(b) = self.batches.get_mut(i) else {
            return;
        };
        if seq < b.first_seq {
            return;
        }
        let Some(waiter) = b.waiters[(seq - b.first_seq) as usize].take() else {
            return;
        };
        if foreign {
            acked.push((
                waiter,
                Err(crate::Error::UnverifiedDuplicate {
                    writer: self.writer,
                    sequence: seq,
                }),
            ));
            return;
        }
        let id = RecordId {
            writer: self.writer,
            sequence: seq,
        };
        let (chunk, offset) = if offset == ChunkOffset::ZERO {
            (None, None)
        } else {
            (Some(chunk), Some(offset))
        };
        acked.push((waiter, Ok(AppendAck { id, chunk, offset })));
    }

    /// Trims acknowledged records off the front, so the first held record is unacknowledged.
    fn drop_acked_head(&mut self) {
        while let Some(b) = self.batches.front_mut() {
            let k = b.waiters.iter().take_while(|w| w.is_none()).count();
            if k < b.len() {
                b.trim_front(k);
                return;
            }
            self.batches.pop_front();
            self.cursor = self.cursor.saturating_sub(1);
        }
    }

    /// Removes every record, for failing them all.
    pub(crate) fn fail_all(&mut self) -> Vec<W> {
        let mut out: Vec<W> = self
            .batches
            .drain(..)
            .flat_map(|b| b.waiters.into_iter().flatten())
            .collect();
        self.queue_first_seq += self.queue.len() as u64;
        out.extend(self.queue.drain(..).map(|(_, w)| w));
        self.queue_bytes = 0;
        self.cursor = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::chunk_offsets;
    use cairn_record::{ScanItem, Scanner};

    /// A waiter that is just the record's sequence.
    #[derive(Debug, PartialEq, Eq)]
    struct Tag(u64);
    impl Waiter for Tag {
        fn complete(self, _: crate::Result<AppendAck>) {}
    }

    fn window(records: u64, payload: usize) -> Window<Tag> {
        let mut w = Window::new(WriterId(7), 1 << 20, 64 << 20, 1);
        for s in 1..=records {
            let id = w.push(Bytes::from(vec![s as u8; payload]), Tag(s));
            assert_eq!(id.sequence, s);
        }
        w
    }

    /// Applies an outcome that must resolve only with acknowledgements.
    fn acks(w: &mut Window<Tag>, meta: SendMeta, outcome: Outcome) -> Vec<(Tag, AppendAck)> {
        w.on_outcome(meta, outcome)
            .into_iter()
            .map(|(t, r)| (t, r.expect("an acknowledgement")))
            .collect()
    }

    fn ok(meta: SendMeta, base: u64) -> Outcome {
        Outcome::Stored {
            unverified: vec![],
            offsets: (0..meta.count as u64)
                .map(|i| ChunkOffset(base + i * 64))
                .collect(),
            full: false,
        }
    }

    fn sequences(frames: &Bytes) -> Vec<u64> {
        Scanner::new(frames, 0)
            .map(|item| match item {
                ScanItem::Record { id, .. } => id.sequence,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    // Proves: no send happens before a location is known; batches are built from everything
    // queued (no linger), in sequence order, and acked_through follows the contiguous prefix.
    #[test]
    fn batches_queued_records_in_order() {
        let mut w = window(10, 10);
        assert!(w.needs_location());
        assert!(w.next_send().is_none());
        w.set_location(0);
        let s = w.next_send().expect("a batch");
        assert_eq!(s.meta.first_seq, 1);
        assert_eq!(s.meta.count, 10);
        assert_eq!(s.acked_through, 0);
        assert_eq!(sequences(&s.frames), (1..=10).collect::<Vec<_>>());
        assert!(w.next_send().is_none());
        let acked = acks(&mut w, s.meta, ok(s.meta, 32));
        assert_eq!(acked.len(), 10);
        assert_eq!(acked[3].1.offset, Some(ChunkOffset(32 + 3 * 64)));
        assert_eq!(acked[3].1.chunk, Some(0));
        assert!(w.is_empty());
        assert_eq!(w.acked_through(), 10);
    }

    // Proves: batches respect the byte bound (one oversized record still travels alone) and the
    // window never holds more than BATCHES_IN_FLIGHT_MAX sends.
    #[test]
    fn batch_bytes_and_window_are_bounded() {
        let per = BATCH_BYTES_MAX / 4;
        let mut w = window(100, per);
        w.set_location(3);
        w.open_window();
        let mut sends = Vec::new();
        while let Some(s) = w.next_send() {
            assert!(s.frames.len() <= BATCH_BYTES_MAX);
            sends.push(s);
        }
        assert_eq!(sends.len(), BATCHES_IN_FLIGHT_MAX);
        assert_eq!(w.in_flight(), BATCHES_IN_FLIGHT_MAX);
        // Sequence order across batches, contiguous.
        for pair in sends.windows(2) {
            assert_eq!(
                pair[0].meta.first_seq + pair[0].meta.count as u64,
                pair[1].meta.first_seq
            );
        }
        let first = sends[0].meta;
        acks(&mut w, first, ok(first, 32));
        let next = w.next_send().expect("room for one more");
        assert_eq!(next.acked_through, first.count as u64);
    }

    // Proves: CHUNK_FULL acknowledges the stored prefix; nothing is sent until a new location;
    // then the unacknowledged rest (and every later batch, even ones answered in the old
    // generation) is resent in order, starting with the trimmed remainder of the cut batch.
    #[test]
    fn chunk_full_acks_prefix_and_resends_the_rest_on_the_next_chunk() {
        let mut w = Window::new(WriterId(7), 1 << 20, 1 << 20, 1); // batches of at most 128 KiB
        for s in 1..=40u64 {
            w.push(Bytes::from(vec![1u8; 16 << 10]), Tag(s));
        }
        w.set_location(0);
        w.open_window();
        let a = w.next_send().unwrap();
        let b = w.next_send().unwrap();
        assert!(a.meta.count > 2);
        let stored = Outcome::Stored {
            unverified: vec![],
            offsets: chunk_offsets(vec![32, 32 + 16416]),
            full: true,
        };
        let acked = acks(&mut w, a.meta, stored);
        assert_eq!(
            acked.iter().map(|(t, _)| t.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(w.take_seal().map(|s| s.0), Some(SealReason::ChunkFull));
        assert!(w.next_send().is_none(), "no sends while sealing");
        // The later batch also comes back full, with nothing stored: no second seal.
        assert!(
            acks(
                &mut w,
                b.meta,
                Outcome::Stored {
                    unverified: vec![],
                    offsets: vec![],
                    full: true
                }
            )
            .is_empty()
        );
        assert!(w.take_seal().is_none());
        w.set_location(1);
        let r = w.next_send().unwrap();
        assert_eq!(r.meta.first_seq, 3);
        assert_eq!(r.meta.chunk, 1);
        assert_eq!(r.acked_through, 2);
        assert_eq!(
            sequences(&r.frames),
            (3..3 + a.meta.count as u64 - 2).collect::<Vec<_>>()
        );
        let r2 = w.next_send().unwrap();
        assert_eq!(r2.meta.first_seq, b.meta.first_seq);
    }

    // Proves: after a failure every unacknowledged batch is resent on the new location in order,
    // an old generation's OK still acknowledges (the records are durable), and its refusals are
    // ignored; a record acknowledged twice resolves once.
    #[test]
    fn failure_resends_everything_unacknowledged_in_order() {
        let mut w = Window::new(WriterId(7), 1 << 20, 64 << 20, 1);
        for s in 1..=50u64 {
            w.push(Bytes::from(vec![1u8; 100 << 10]), Tag(s));
        }
        w.set_location(0);
        w.open_window();
        let sends: Vec<_> = std::iter::from_fn(|| w.next_send()).collect();
        assert_eq!(sends.len(), 5);
        acks(&mut w, sends[0].meta, ok(sends[0].meta, 32));
        acks(
            &mut w,
            sends[1].meta,
            Outcome::Failed {
                reason: SealReason::AppendFailed,
                fenced: false,
                detail: "x".into(),
            },
        );
        assert_eq!(w.take_seal().map(|s| s.0), Some(SealReason::AppendFailed));
        w.set_location(1);
        let resend: Vec<_> = std::iter::from_fn(|| w.next_send()).collect();
        assert_eq!(resend[0].meta.first_seq, sends[1].meta.first_seq);
        assert_eq!(resend[1].meta.first_seq, sends[2].meta.first_seq);
        // The old generation's answer for the third batch arrives late: OK counts.
        let late = acks(&mut w, sends[2].meta, ok(sends[2].meta, 5000));
        assert_eq!(late.len(), sends[2].meta.count);
        assert!(late.iter().all(|(_, a)| a.chunk == Some(0)));
        // The new generation's answer for the same batch resolves nothing twice.
        let again = acks(&mut w, resend[1].meta, ok(resend[1].meta, 32));
        assert!(again.is_empty());
        // Old-generation refusals change nothing.
        acks(&mut w, sends[3].meta, Outcome::OutOfOrder { expected: 1 });
        assert!(w.take_seal().is_none());
        let done = acks(&mut w, resend[0].meta, ok(resend[0].meta, 32));
        assert_eq!(done.len(), sends[1].meta.count);
        assert_eq!(
            w.acked_through(),
            sends[2].meta.first_seq + sends[2].meta.count as u64 - 1
        );
    }

    // Proves: OUT_OF_ORDER waits until the generation's earlier sends are answered, then resends
    // from the batch holding the expected sequence, in order.
    #[test]
    fn out_of_order_resends_after_earlier_batches_are_answered() {
        let mut w = Window::new(WriterId(7), 1 << 20, 64 << 20, 1);
        for s in 1..=30u64 {
            w.push(Bytes::from(vec![1u8; 100 << 10]), Tag(s));
        }
        w.set_location(0);
        w.open_window();
        let a = w.next_send().unwrap();
        let b = w.next_send().unwrap();
        let c = w.next_send().unwrap();
        // b overtook a on the way.
        acks(&mut w, b.meta, Outcome::OutOfOrder { expected: 1 });
        assert!(
            w.next_send().is_none(),
            "no sends until a and c are answered"
        );
        acks(&mut w, a.meta, ok(a.meta, 32));
        assert!(w.next_send().is_none());
        acks(
            &mut w,
            c.meta,
            Outcome::OutOfOrder {
                expected: b.meta.first_seq,
            },
        );
        let r1 = w.next_send().unwrap();
        let r2 = w.next_send().unwrap();
        assert_eq!(r1.meta.first_seq, b.meta.first_seq);
        assert_eq!(r2.meta.first_seq, c.meta.first_seq);
        assert_eq!(r1.acked_through, a.meta.count as u64);
    }

    // Proves: "already stored" answers (offset 0) resolve with no location.
    #[test]
    fn duplicate_answer_has_no_location() {
        let mut w = window(2, 1);
        w.set_location(4);
        let s = w.next_send().unwrap();
        let acked = acks(
            &mut w,
            s.meta,
            Outcome::Stored {
                unverified: vec![],
                offsets: chunk_offsets(vec![0, 96]),
                full: false,
            },
        );
        assert_eq!((acked[0].1.chunk, acked[0].1.offset), (None, None));
        assert_eq!(
            (acked[1].1.chunk, acked[1].1.offset),
            (Some(4), Some(ChunkOffset(96)))
        );
    }

    // Proves: a primary answering the wrong number of offsets is treated as a failed append
    // (seal and resend), never as an acknowledgement.
    #[test]
    fn wrong_offset_count_is_a_failure() {
        let mut w = window(3, 1);
        w.set_location(0);
        let s = w.next_send().unwrap();
        let acked = acks(
            &mut w,
            s.meta,
            Outcome::Stored {
                unverified: vec![],
                offsets: chunk_offsets(vec![32]),
                full: false,
            },
        );
        assert!(acked.is_empty());
        assert_eq!(w.take_seal().map(|s| s.0), Some(SealReason::AppendFailed));
    }

    // Proves: fail_all hands back every unresolved waiter once and leaves the window empty.
    #[test]
    fn fail_all_returns_every_waiter() {
        let mut w = window(5, 1);
        w.set_location(0);
        let s = w.next_send().unwrap();
        w.push(Bytes::from_static(b"x"), Tag(6));
        acks(
            &mut w,
            s.meta,
            Outcome::Stored {
                unverified: vec![],
                offsets: chunk_offsets(vec![32, 64]),
                full: true,
            },
        );
        let failed = w.fail_all();
        assert_eq!(failed, vec![Tag(3), Tag(4), Tag(5), Tag(6)]);
        assert!(w.is_empty());
        assert_eq!(w.push(Bytes::new(), Tag(7)).sequence, 7);
    }

    // Proves: the window starts at one batch (the next batch gathers what queued meanwhile),
    // grows by one per WINDOW_GROW_AFTER_BATCHES in-order batches, and halves on OUT_OF_ORDER.
    #[test]
    fn window_grows_in_order_and_halves_on_out_of_order() {
        let mut w = window(0, 0);
        w.set_location(0);
        let mut seq = 0;
        // Records big enough that each one alone may be pipelined.
        let big = Bytes::from(vec![7u8; PIPELINE_BATCH_BYTES_MIN]);
        let mut push = |w: &mut Window<Tag>| {
            seq += 1;
            w.push(big.clone(), Tag(seq));
        };
        push(&mut w);
        let first = w.next_send().expect("one batch fits the window");
        push(&mut w);
        assert!(w.next_send().is_none(), "a window of one batch");
        acks(&mut w, first.meta, ok(first.meta, 32));
        for _ in 1..2 * WINDOW_GROW_AFTER_BATCHES {
            let s = w.next_send().expect("room again");
            acks(&mut w, s.meta, ok(s.meta, 32));
            push(&mut w);
        }
        // 2 × WINDOW_GROW_AFTER_BATCHES batches in order: the window grew to three.
        let sends: Vec<_> = (0..4)
            .filter_map(|_| {
                push(&mut w);
                w.next_send()
            })
            .collect();
        assert_eq!(sends.len(), 3);
        // The second overtook the first: the window halves to one.
        acks(
            &mut w,
            sends[1].meta,
            Outcome::OutOfOrder {
                expected: sends[0].meta.first_seq,
            },
        );
        acks(&mut w, sends[0].meta, ok(sends[0].meta, 32));
        assert!(w.next_send().is_none(), "the third is still in flight");
        acks(
            &mut w,
            sends[2].meta,
            Outcome::OutOfOrder {
                expected: sends[1].meta.first_seq,
            },
        );
        let resent: Vec<_> = std::iter::from_fn(|| w.next_send()).collect();
        assert_eq!(resent.len(), 1);
        assert_eq!(resent[0].meta.first_seq, sends[1].meta.first_seq);
    }

    // Proves: while a batch is in flight, a new batch of small records waits for the answer
    // unless it would hold more records than are in flight (two equal halves merge back into
    // one batch); a queue of PIPELINE_BATCH_BYTES_MIN bytes is pipelined at once; resends are
    // never held back.
    #[test]
    fn small_batches_wait_for_the_answer_large_ones_pipeline() {
        let mut w = window(3, 100);
        w.set_location(0);
        w.open_window();
        let first = w.next_send().expect("nothing in flight: send at once");
        assert_eq!(first.meta.count, 3);
        for s in 4..=6 {
            w.push(Bytes::from(vec![1u8; 100]), Tag(s));
        }
        assert!(w.next_send().is_none(), "3 queued behind 3 in flight wait");
        acks(&mut w, first.meta, ok(first.meta, 32));
        let second = w.next_send().expect("answered: the gathered records go");
        assert_eq!((second.meta.first_seq, second.meta.count), (4, 3));
        for s in 7..=10 {
            w.push(Bytes::from(vec![1u8; 100]), Tag(s));
        }
        let third = w.next_send().expect("4 queued behind 3 in flight go");
        assert_eq!((third.meta.first_seq, third.meta.count), (7, 4));
        // A large queue goes out whatever is in flight.
        for s in 11..=14 {
            w.push(Bytes::from(vec![2u8; PIPELINE_BATCH_BYTES_MIN / 4]), Tag(s));
        }
        let fourth = w.next_send().expect("a full enough batch is pipelined");
        assert_eq!(fourth.meta.first_seq, 11);
        // A seal moves to a new generation: every held batch is resent back to back.
        w.set_location(1);
        let resent: Vec<_> = std::iter::from_fn(|| w.next_send()).collect();
        let firsts: Vec<_> = resent.iter().map(|s| s.meta.first_seq).collect();
        assert_eq!(firsts, vec![4, 7, 11]);
    }

    // Proves (issue 8 item 10): a duplicate the primary could not compare acknowledges a
    // record only if this appender may have stored it itself (its batch went out in a
    // generation that ended unanswered); on a first send it fails that record alone with
    // UnverifiedDuplicate, and the window goes on; an "unverified" index that is not a
    // duplicate (offset 0) is a protocol error, never an acknowledgement.
    #[test]
    fn unverified_duplicates_acknowledge_only_this_appenders_resends() {
        let mut w = window(4, 8);
        w.set_location(0);
        w.open_window();
        let first = w.next_send().unwrap();
        assert!(!first.meta.resend);
        let resolved = w.on_outcome(
            first.meta,
            Outcome::Stored {
                offsets: chunk_offsets(vec![0, 0, 32, 72]),
                unverified: vec![0],
                full: false,
            },
        );
        assert_eq!(resolved.len(), 4);
        match &resolved[0].1 {
            Err(crate::Error::UnverifiedDuplicate {
                writer: WriterId(7),
                sequence: 1,
            }) => {}
            other => panic!("expected an unverified duplicate, got {other:?}"),
        }
        assert!(resolved[1..].iter().all(|(_, r)| r.is_ok()));
        assert!(w.is_empty(), "the failed record is resolved, not resent");

        // A batch sent, its generation ended unanswered (a seal), resent: now the appender may
        // have stored it, so "unverified" acknowledges it (place unknown).
        let mut w = window(2, 8);
        w.set_location(0);
        let lost = w.next_send().unwrap();
        w.set_location(1);
        let resend = w.next_send().unwrap();
        assert_eq!(resend.meta.first_seq, lost.meta.first_seq);
        assert!(resend.meta.resend);
        let acked = acks(
            &mut w,
            resend.meta,
            Outcome::Stored {
                offsets: chunk_offsets(vec![0, 0]),
                unverified: vec![0, 1],
                full: false,
            },
        );
        assert!(acked.iter().all(|(_, a)| a.chunk.is_none()));

        // "Unverified" on a record answered with a real offset: a failure, nothing resolved.
        let mut w = window(1, 8);
        w.set_location(0);
        let s = w.next_send().unwrap();
        let resolved = w.on_outcome(
            s.meta,
            Outcome::Stored {
                offsets: chunk_offsets(vec![32]),
                unverified: vec![0],
                full: false,
            },
        );
        assert!(resolved.is_empty());
        assert!(w.sealing());
    }
}
