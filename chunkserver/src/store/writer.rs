//! One replica in memory, and the group-commit writer of an open replica.
//!
//! Every mutation of an open replica (append, fence, seal, stop) is a message in the replica's
//! inbox. A writer *step* takes *everything* queued at once, checks and orders it, writes the
//! contiguous run with one `pwritev`, `fdatasync`s the chunk file, advances the durable length
//! and completes the group's appends: one device flush per group. While a step waits for the
//! disk, new appends pile up in the inbox and form the next group. Steps run on the store's
//! scheduler ([`super::schedule`]: a bounded thread pool, or inline), one at a time per
//! replica.
//!
//! The `.meta` file is written only when the replica's state changes (creation, fence, seal,
//! failure), never per group: an open replica's length is whatever whole frames its file holds.
//! An acknowledged byte that one replica later loses (a truncated file) is still on every other
//! replica, and the master seals at the *longest* fenced length and brings shorter replicas up
//! to it (ARCHITECTURE.md, "Seal"), so no single replica's length can shorten the log.
//!
//! Appends that arrive early (offset past the current end) wait in a bounded window until the
//! bytes before them arrive, or fail with `GapTimeout`.
//!
//! When the replica is sealed, fails, is deleted or the store shuts down, the writer closes the
//! inbox and ends; later requests are answered by the caller's thread ("inline") from the
//! replica's status.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use cairn_record::{ByteRange, ChunkHandle, ChunkVersion};
use tokio::sync::oneshot;
// tokio's clock: real time in the server, the simulated clock in a simulation.
use tokio::time::Instant;
use tracing::{error, info, trace, warn};

use super::disk::DiskFile;
use super::files::FileSource;
use super::meta::Meta;
use super::schedule::{Next, Scheduler, Step};
use super::{ReplicaState, StoreStats};
use crate::error::{Error, Result};
use crate::limits::{
    APPEND_WINDOW_BYTES_MAX, APPEND_WINDOW_COUNT_MAX, APPEND_WINDOW_TIMEOUT_MS,
    WRITER_QUEUE_COUNT_MAX,
};

/// Counters shared by every replica of a store.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) groups: AtomicU64,
    pub(crate) appends: AtomicU64,
    pub(crate) data_fsyncs: AtomicU64,
    pub(crate) meta_fsyncs: AtomicU64,
    /// Replicas whose writer runs (open, healthy), each holding two descriptors.
    pub(crate) open_replicas: AtomicU64,
    /// Group commit timings, once the chunkserver's metrics are registered.
    pub(crate) timings: std::sync::OnceLock<crate::metrics::WriterMetrics>,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            groups: self.groups.load(Ordering::Relaxed),
            appends: self.appends.load(Ordering::Relaxed),
            data_fsyncs: self.data_fsyncs.load(Ordering::Relaxed),
            meta_fsyncs: self.meta_fsyncs.load(Ordering::Relaxed),
        }
    }
}

/// A request for a replica's writer.
pub(crate) enum Msg {
    Append {
        version: ChunkVersion,
        offset: u64,
        frames: Bytes,
        reply: oneshot::Sender<Result<u64>>,
    },
    Fence {
        version: ChunkVersion,
        reply: oneshot::Sender<Result<ReplicaState>>,
    },
    Seal {
        version: ChunkVersion,
        len: u64,
        reply: std::sync::mpsc::SyncSender<Result<ReplicaState>>,
    },
    Stop,
}

/// What [`Replica::submit`] did with a message.
pub(crate) enum Submitted {
    /// The writer will answer it.
    Queued,
    /// The replica has no writer; the caller answers it with [`Replica::answer_inline`].
    NoWriter(Msg),
}

/// The replica's state as the rest of the store sees it.
#[derive(Debug)]
pub(crate) struct Status {
    /// The last persisted `.meta` state. While a writer runs, only the writer changes it.
    pub(crate) meta: Meta,
    /// Bad ranges found at startup; a corrupt replica gets no writer.
    pub(crate) corrupt: Vec<ByteRange>,
    /// Removed from the store.
    pub(crate) deleted: bool,
}

#[derive(Default)]
struct Inbox {
    msgs: Vec<Msg>,
    appends: usize,
    closed: bool,
    /// A step is queued or running: nobody else schedules one.
    scheduled: bool,
    /// The writer ended (see [`Replica::stop_writer`]).
    finished: bool,
}

/// A replica's files, held open while its writer runs.
pub(crate) struct Pinned<F> {
    pub(crate) chunk: Arc<F>,
    pub(crate) meta: F,
}

/// One replica: its durable length, status and inbox, and its files while it is open. A replica
/// without a writer holds no descriptor: it reaches its files through `files` (see
/// [`super::files`]).
pub(crate) struct Replica<F: DiskFile> {
    pub(crate) handle: ChunkHandle,
    /// The chunk and `.meta` files while the writer runs; `None` otherwise.
    pinned: Mutex<Option<Pinned<F>>>,
    files: Arc<dyn FileSource<F>>,
    /// Bytes of the file that are durable; reads never go past this.
    pub(crate) durable: AtomicU64,
    pub(crate) status: Mutex<Status>,
    inbox: Mutex<Inbox>,
    /// Signalled when the writer ends.
    finished: Condvar,
    /// The writer's state while it runs; taken by each step.
    writer: Mutex<Option<Writer<F>>>,
    scheduler: Arc<Scheduler>,
    pub(crate) stats: Arc<Stats>,
}

impl<F: DiskFile> Replica<F> {
    /// A replica whose files are `pinned` (an open replica about to get a writer) or reached
    /// through `files` (`pinned` is `None`).
    pub(crate) fn new(
        handle: ChunkHandle,
        pinned: Option<Pinned<F>>,
        files: Arc<dyn FileSource<F>>,
        len: u64,
        status: Status,
        stats: Arc<Stats>,
        scheduler: Arc<Scheduler>,
    ) -> Replica<F> {
        let has_writer = status.writable();
        Replica {
            handle,
            pinned: Mutex::new(pinned),
            files,
            durable: AtomicU64::new(len),
            status: Mutex::new(status),
            inbox: Mutex::new(Inbox {
                closed: !has_writer,
                finished: !has_writer,
                ..Inbox::default()
            }),
            finished: Condvar::new(),
            writer: Mutex::new(None),
            scheduler,
            stats,
        }
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().expect("replica status lock poisoned")
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().expect("replica inbox lock poisoned")
    }

    /// The replica's state for reports.
    pub(crate) fn state(&self) -> ReplicaState {
        let s = self.status();
        ReplicaState {
            handle: self.handle,
            version: s.meta.version,
            capacity: s.meta.capacity,
            len: self.durable.load(Ordering::Acquire),
            acked_len: s.meta.acked_len,
            sealed: s.meta.sealed,
            failed: s.meta.failed,
            corrupt: s.corrupt.clone(),
        }
    }

    /// Queues `msg` for the writer (scheduling a step), or hands it back if there is none.
    pub(crate) fn submit(self: &Arc<Self>, msg: Msg) -> Result<Submitted> {
        let mut q = self.inbox();
        if q.closed {
            return Ok(Submitted::NoWriter(msg));
        }
        if let Msg::Append { .. } = msg {
            if q.appends >= WRITER_QUEUE_COUNT_MAX {
                return Err(Error::Overloaded {
                    handle: self.handle,
                });
            }
            q.appends += 1;
        }
        q.msgs.push(msg);
        let schedule = !q.scheduled;
        q.scheduled = true;
        drop(q);
        if schedule {
            self.scheduler.run(self.clone());
        }
        Ok(Submitted::Queued)
    }

    /// Answers a message for a replica whose writer is gone (sealed, failed, corrupt, deleted
    /// or shut down), from its status.
    pub(crate) fn answer_inline(&self, msg: Msg) {
        match msg {
            Msg::Append { reply, .. } => {
                let _ = reply.send(Err(self.refusal()));
            }
            Msg::Fence { version, reply } => {
                let _ = reply.send(self.fence_inline(version));
            }
            Msg::Seal {
                version,
                len,
                reply,
            } => {
                let _ = reply.send(self.seal_inline(version, len));
            }
            Msg::Stop => {}
        }
    }

    /// Why a replica without a writer refuses appends.
    fn refusal(&self) -> Error {
        let s = self.status();
        let handle = self.handle;
        if s.deleted {
            Error::NotFound { handle }
        } else if s.meta.failed {
            Error::Failed { handle }
        } else if !s.corrupt.is_empty() {
            Error::Corrupt {
                handle,
                ranges: s.corrupt.clone(),
            }
        } else if s.meta.sealed {
            Error::Sealed { handle }
        } else {
            Error::Closed { handle }
        }
    }

    /// Fences a replica without a writer: a sealed replica records a higher version; a failed,
    /// corrupt or deleted one reports why it cannot take part.
    fn fence_inline(&self, version: ChunkVersion) -> Result<ReplicaState> {
        let mut s = self.status();
        if !s.meta.sealed || s.deleted || s.meta.failed || !s.corrupt.is_empty() {
            drop(s);
            return Err(self.refusal());
        }
        if version < s.meta.version {
            return Err(Error::StaleVersion {
                handle: self.handle,
                have: s.meta.version,
                got: version,
            });
        }
        if version > s.meta.version {
            let next = Meta { version, ..s.meta };
            s.meta = self.write_meta(next).map_err(|_| Error::Failed {
                handle: self.handle,
            })?;
        }
        drop(s);
        Ok(self.state())
    }

    /// Seal of a replica without a writer: idempotent for a sealed one at the same length.
    fn seal_inline(&self, version: ChunkVersion, len: u64) -> Result<ReplicaState> {
        let s = self.status();
        let same = s.meta.sealed && s.meta.acked_len == len && s.meta.version == version;
        drop(s);
        if same && self.status().corrupt.is_empty() && !self.status().meta.failed {
            return Ok(self.state());
        }
        Err(self.refusal())
    }

    /// Writes `next` (with the next generation) into its slot and fsyncs the `.meta` file.
    /// Returns the state as written. The caller stores it in the status.
    pub(super) fn write_meta(&self, next: Meta) -> io::Result<Meta> {
        let m = Meta {
            generation: next.generation + 1,
            ..next
        };
        let pinned = self.pinned.lock().expect("replica files lock poisoned");
        match pinned.as_ref() {
            Some(p) => {
                p.meta.write_all_at(&m.encode(), m.slot_offset())?;
                p.meta.sync_data()?;
            }
            None => {
                drop(pinned);
                // A replica without a writer changes state rarely (a fence, a corrupt mark): open
                // the file for this write only, so it holds no descriptor the rest of the time.
                let meta = self.files.meta(self.handle)?;
                meta.write_all_at(&m.encode(), m.slot_offset())?;
                meta.sync_data()?;
            }
        }
        self.stats.meta_fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(m)
    }

    /// The chunk file: the writer's while it runs, else from the store's descriptor cache.
    pub(crate) fn chunk_file(&self) -> io::Result<Arc<F>> {
        let pinned = self.pinned.lock().expect("replica files lock poisoned");
        match pinned.as_ref() {
            Some(p) => Ok(p.chunk.clone()),
            None => {
                drop(pinned);
                self.files.chunk(self.handle)
            }
        }
    }

    /// Releases the files the writer held: the `.meta` file is closed, the chunk file goes to
    /// the descriptor cache (a sealed replica is likely read soon), unless the replica is gone.
    pub(crate) fn unpin(&self) {
        let pinned = self
            .pinned
            .lock()
            .expect("replica files lock poisoned")
            .take();
        if let Some(p) = pinned
            && !self.status().deleted
        {
            self.files.adopt(self.handle, p.chunk);
        }
    }

    /// Closes the inbox, answers whatever is still in it, and tells waiters the writer ended.
    fn close_inbox(&self) {
        let left = {
            let mut q = self.inbox();
            q.closed = true;
            q.appends = 0;
            q.finished = true;
            std::mem::take(&mut q.msgs)
        };
        self.finished.notify_all();
        for msg in left {
            self.answer_inline(msg);
        }
    }

    /// Starts the writer of an open replica: its state is set up and steps run as work arrives
    /// (see [`super::schedule`]). False (the replica closed) if its chunk file cannot be had.
    pub(crate) fn start_writer(self: &Arc<Self>) -> bool {
        let meta = self.status().meta;
        let end = self.durable.load(Ordering::Acquire);
        let file = match self.chunk_file() {
            Ok(f) => f,
            Err(e) => {
                error!(chunk = %self.handle, error = %e, "writer has no chunk file; replica closed");
                self.close_inbox();
                return false;
            }
        };
        self.stats.open_replicas.fetch_add(1, Ordering::AcqRel);
        *self.writer.lock().expect("replica writer lock poisoned") = Some(Writer {
            rep: self.clone(),
            file,
            meta,
            end,
            group: Vec::new(),
            replies: Vec::new(),
            group_end: end,
            window: BTreeMap::new(),
            window_bytes: 0,
            stopping: false,
            seal_reply: None,
        });
        true
    }

    /// Asks the writer to finish what is queued and end, and waits until it has.
    pub(crate) fn stop_writer(self: &Arc<Self>) {
        if let Ok(Submitted::NoWriter(msg)) = self.submit(Msg::Stop) {
            self.answer_inline(msg);
        }
        let mut q = self.inbox();
        while !q.finished {
            q = self.finished.wait(q).expect("replica inbox lock poisoned");
        }
    }
}

impl Status {
    /// Whether the replica accepts appends (and so runs a writer).
    pub(crate) fn writable(&self) -> bool {
        !self.meta.sealed && !self.meta.failed && self.corrupt.is_empty() && !self.deleted
    }
}

/// An early append, waiting for the bytes before it.
struct Held {
    version: ChunkVersion,
    frames: Bytes,
    reply: oneshot::Sender<Result<u64>>,
    deadline: Instant,
}

/// The writer's state between steps.
struct Writer<F: DiskFile> {
    rep: Arc<Replica<F>>,
    /// The chunk file, pinned in the replica while the writer runs.
    file: Arc<F>,
    /// Copy of the persisted `.meta` state; only the writer changes it while it runs.
    meta: Meta,
    /// Length of the chunk file, all of it durable between groups: the replica's durable
    /// length.
    end: u64,
    /// Frames of the group being formed, contiguous from `end`.
    group: Vec<Bytes>,
    replies: Vec<oneshot::Sender<Result<u64>>>,
    /// Where the group being formed ends.
    group_end: u64,
    window: BTreeMap<u64, Held>,
    window_bytes: usize,
    stopping: bool,
    /// The answer to the seal that ended the writer, sent once it has ended.
    seal_reply: Option<(
        std::sync::mpsc::SyncSender<Result<ReplicaState>>,
        Result<ReplicaState>,
    )>,
}

impl<F: DiskFile> Step for Replica<F> {
    /// One group: everything queued now, written and made durable at once (see the module doc).
    fn step(self: Arc<Self>) -> Next {
        let mut slot = self.writer.lock().expect("replica writer lock poisoned");
        let Some(w) = slot.as_mut() else {
            // Ended while this step was queued.
            self.inbox().scheduled = false;
            return Next::Idle;
        };
        let batch = {
            let mut q = self.inbox();
            q.appends = 0;
            std::mem::take(&mut q.msgs)
        };
        for msg in batch {
            if w.stopping {
                self.answer_inline(msg);
            } else {
                w.handle(msg);
            }
        }
        w.expire_window(Instant::now());
        w.flush();
        if w.stopping {
            w.fail_window(|_| Error::Closed {
                handle: self.handle,
            });
            let seal_reply = w.seal_reply.take();
            // Dropping the state drops its reference to this replica.
            *slot = None;
            drop(slot);
            // The replica keeps no descriptor once it is no longer open.
            self.unpin();
            self.stats.open_replicas.fetch_sub(1, Ordering::AcqRel);
            self.close_inbox();
            if let Some((reply, result)) = seal_reply {
                let _ = reply.send(result);
            }
            return Next::Done;
        }
        let deadline = w.window.values().map(|h| h.deadline).min();
        drop(slot);
        let mut q = self.inbox();
        if !q.msgs.is_empty() {
            return Next::Again;
        }
        q.scheduled = false;
        match deadline {
            Some(at) => Next::At(at),
            None => Next::Idle,
        }
    }

    fn wake(self: Arc<Self>) {
        let mut q = self.inbox();
        if q.closed || q.scheduled {
            return;
        }
        q.scheduled = true;
        drop(q);
        let scheduler = self.scheduler.clone();
        scheduler.run(self);
    }
}

impl<F: DiskFile> Writer<F> {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Append {
                version,
                offset,
                frames,
                reply,
            } => self.on_append(version, offset, frames, reply),
            Msg::Fence { version, reply } => {
                self.flush();
                let _ = reply.send(self.on_fence(version));
            }
            Msg::Seal {
                version,
                len,
                reply,
            } => {
                self.flush();
                let result = self.on_seal(version, len);
                if self.stopping {
                    // Answered once the writer has ended (its descriptors released, the store's
                    // open count lowered), so the caller sees the replica fully sealed.
                    self.seal_reply = Some((reply, result));
                } else {
                    let _ = reply.send(result);
                }
            }
            Msg::Stop => {
                self.flush();
                self.stopping = true;
            }
        }
    }

    fn check_append(&self, version: ChunkVersion, offset: u64, len: u64) -> Result<()> {
        let handle = self.rep.handle;
        if version != self.meta.version {
            return Err(Error::StaleVersion {
                handle,
                have: self.meta.version,
                got: version,
            });
        }
        if len == 0 || !len.is_multiple_of(8) || !offset.is_multiple_of(8) {
            return Err(Error::Misaligned {
                handle,
                offset,
                len,
            });
        }
        if offset < self.group_end {
            return Err(Error::WrongOffset {
                handle,
                expected: self.group_end,
                got: offset,
            });
        }
        let end = offset.saturating_add(len);
        if end > self.meta.capacity {
            return Err(Error::PastCapacity {
                handle,
                capacity: self.meta.capacity,
                end,
            });
        }
        Ok(())
    }

    fn on_append(
        &mut self,
        version: ChunkVersion,
        offset: u64,
        frames: Bytes,
        reply: oneshot::Sender<Result<u64>>,
    ) {
        if let Err(e) = self.check_append(version, offset, frames.len() as u64) {
            let _ = reply.send(Err(e));
            return;
        }
        if offset == self.group_end {
            self.push(frames, reply);
            self.pull_window();
            return;
        }
        let handle = self.rep.handle;
        if self.window.contains_key(&offset) {
            let _ = reply.send(Err(Error::WrongOffset {
                handle,
                expected: self.group_end,
                got: offset,
            }));
            return;
        }
        if self.window.len() >= APPEND_WINDOW_COUNT_MAX
            || self.window_bytes + frames.len() > APPEND_WINDOW_BYTES_MAX
        {
            let _ = reply.send(Err(Error::WindowFull { handle, offset }));
            return;
        }
        trace!(chunk = %handle, offset, expected = self.group_end, "holding early append");
        self.window_bytes += frames.len();
        self.window.insert(
            offset,
            Held {
                version,
                frames,
                reply,
                deadline: Instant::now() + Duration::from_millis(APPEND_WINDOW_TIMEOUT_MS),
            },
        );
    }

    fn push(&mut self, frames: Bytes, reply: oneshot::Sender<Result<u64>>) {
        self.group_end += frames.len() as u64;
        self.group.push(frames);
        self.replies.push(reply);
    }

    /// Moves held appends that now continue the group into it.
    fn pull_window(&mut self) {
        while let Some(entry) = self.window.first_entry() {
            if *entry.key() != self.group_end {
                return;
            }
            let held = entry.remove();
            self.window_bytes -= held.frames.len();
            // Held appends were checked on arrival, and a fence fails them all, so they still
            // carry the current version.
            assert_eq!(
                held.version, self.meta.version,
                "held append outlived a fence"
            );
            self.push(held.frames, held.reply);
        }
    }

    fn expire_window(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .window
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&o, _)| o)
            .collect();
        for offset in expired {
            let held = self.window.remove(&offset).expect("key just listed");
            self.window_bytes -= held.frames.len();
            warn!(chunk = %self.rep.handle, offset, expected = self.group_end, "early append timed out");
            let _ = held.reply.send(Err(Error::GapTimeout {
                handle: self.rep.handle,
                expected: self.group_end,
                got: offset,
            }));
        }
    }

    fn fail_window(&mut self, why: impl Fn(&Held) -> Error) {
        for (_, held) in std::mem::take(&mut self.window) {
            let e = why(&held);
            let _ = held.reply.send(Err(e));
        }
        self.window_bytes = 0;
    }

    fn fail_group(&mut self, why: impl Fn() -> Error) {
        self.group.clear();
        for reply in self.replies.drain(..) {
            let _ = reply.send(Err(why()));
        }
        self.group_end = self.end;
    }

    /// Writes the group and makes it durable, then advances the durable length and completes
    /// the group's appends. On a full disk the file is cut back to the group's start and the
    /// whole group fails; on any other I/O error the replica fails.
    fn flush(&mut self) {
        if self.group.is_empty() || self.meta.failed {
            return;
        }
        let handle = self.rep.handle;
        let start = self.end;
        let new_end = self.group_end;
        match self.file.size() {
            Ok(len) => assert_eq!(len, start, "write offset must equal the file length"),
            Err(e) => return self.fail(e, "stat"),
        }
        if let Err(e) = self.write_group(start) {
            if is_disk_full(&e) {
                return self.disk_full(start);
            }
            return self.fail(e, "write");
        }
        let synced = std::time::Instant::now();
        if let Err(e) = self.file.sync_data() {
            return self.fail(e, "fdatasync");
        }
        let n = self.replies.len() as u64;
        if let Some(timings) = self.rep.stats.timings.get() {
            timings
                .fsync_seconds
                .observe(synced.elapsed().as_secs_f64());
            timings.group_batches.observe(n as f64);
        }
        self.end = new_end;
        self.group.clear();
        self.rep.durable.store(new_end, Ordering::Release);
        self.rep.stats.data_fsyncs.fetch_add(1, Ordering::Relaxed);
        self.rep.stats.groups.fetch_add(1, Ordering::Relaxed);
        self.rep.stats.appends.fetch_add(n, Ordering::Relaxed);
        trace!(chunk = %handle, appends = n, bytes = new_end - start, "group durable");
        for reply in self.replies.drain(..) {
            let _ = reply.send(Ok(new_end));
        }
    }

    /// One `pwritev` of the whole group, repeated for whatever a short write left.
    fn write_group(&mut self, start: u64) -> io::Result<()> {
        let mut offset = start;
        let mut i = 0;
        while i < self.group.len() {
            let mut n = self.file.write_vectored_at(&self.group[i..], offset)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            while n > 0 {
                let len = self.group[i].len();
                if n >= len {
                    n -= len;
                    i += 1;
                } else {
                    self.group[i].advance(n);
                    n = 0;
                }
            }
        }
        assert_eq!(offset, self.group_end, "wrote exactly the group");
        Ok(())
    }

    /// A full disk: cut the partial group off so the file stays parseable, fail the group.
    fn disk_full(&mut self, start: u64) {
        let handle = self.rep.handle;
        warn!(chunk = %handle, len = start, "disk full: group not stored, file cut back");
        let cut = self
            .file
            .set_len(start)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            return self.fail(e, "truncate after disk full");
        }
        self.fail_group(|| Error::DiskFull { handle });
    }

    /// An I/O error we cannot trust to heal (never retry an fsync): the replica fails, and every
    /// append waiting on it fails too.
    fn fail(&mut self, e: io::Error, op: &'static str) {
        let handle = self.rep.handle;
        error!(chunk = %handle, op, error = %e, "replica failed");
        // Everything up to `end` was flushed before the failing operation.
        let next = Meta {
            failed: true,
            acked_len: self.end,
            ..self.meta
        };
        match self.rep.write_meta(next) {
            Ok(m) => self.set_meta(m),
            Err(e) => {
                error!(chunk = %handle, error = %e, "could not persist the failed flag");
                self.meta.failed = true;
                self.rep.status().meta.failed = true;
            }
        }
        self.fail_group(|| Error::Failed { handle });
        self.fail_window(|_| Error::Failed { handle });
        self.stopping = true;
    }

    fn set_meta(&mut self, m: Meta) {
        self.meta = m;
        self.rep.status().meta = m;
    }

    fn on_fence(&mut self, version: ChunkVersion) -> Result<ReplicaState> {
        let handle = self.rep.handle;
        if self.meta.failed {
            return Err(Error::Failed { handle });
        }
        if version < self.meta.version {
            return Err(Error::StaleVersion {
                handle,
                have: self.meta.version,
                got: version,
            });
        }
        if version > self.meta.version {
            self.fail_window(|h| Error::StaleVersion {
                handle,
                have: version,
                got: h.version,
            });
            // The whole file is durable here (the group was flushed before the fence): record
            // its length too, so that losing any of it later reads as corruption.
            let next = Meta {
                version,
                acked_len: self.end,
                ..self.meta
            };
            match self.rep.write_meta(next) {
                Ok(m) => self.set_meta(m),
                Err(e) => {
                    self.fail(e, "meta write");
                    return Err(Error::Failed { handle });
                }
            }
            info!(chunk = %handle, %version, len = self.end, "replica fenced");
        }
        Ok(self.rep.state())
    }

    fn on_seal(&mut self, version: ChunkVersion, len: u64) -> Result<ReplicaState> {
        let handle = self.rep.handle;
        if self.meta.failed {
            return Err(Error::Failed { handle });
        }
        if version != self.meta.version {
            return Err(Error::StaleVersion {
                handle,
                have: self.meta.version,
                got: version,
            });
        }
        if len > self.end {
            return Err(Error::SealBeyondEnd {
                handle,
                len,
                have: self.end,
            });
        }
        if len < cairn_record::limits::CHUNK_HEADER_BYTES as u64 || !len.is_multiple_of(8) {
            return Err(Error::Misaligned {
                handle,
                offset: len,
                len: 0,
            });
        }
        self.fail_window(|_| Error::Sealed { handle });
        // Persist the seal before cutting the file: a crash in between finds a sealed replica
        // longer than its sealed length and finishes the cut, instead of an open replica
        // shorter than its acknowledged length (which would look like corruption).
        let next = Meta {
            sealed: true,
            acked_len: len,
            ..self.meta
        };
        match self.rep.write_meta(next) {
            Ok(m) => self.set_meta(m),
            Err(e) => {
                self.fail(e, "meta write");
                return Err(Error::Failed { handle });
            }
        }
        if len < self.end {
            let cut = self.file.set_len(len).and_then(|()| self.file.sync_data());
            if let Err(e) = cut {
                self.fail(e, "seal truncate");
                return Err(Error::Failed { handle });
            }
            self.rep.durable.store(len, Ordering::Release);
            self.end = len;
            self.group_end = len;
        }
        info!(chunk = %handle, %version, len, "replica sealed");
        self.stopping = true;
        Ok(self.rep.state())
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::WriteZero
}
