//! One replica in memory, and the group-commit writer thread of an open replica.
//!
//! Every mutation of an open replica (append, fence, seal, stop) is a message in the replica's
//! inbox. The writer thread takes *everything* queued at once, checks and orders it, writes the
//! contiguous run with one `pwritev` and `fdatasync`s the chunk file. It then hands the group's
//! replies and new length to the replica's *meta committer* thread and goes on with the next
//! group at once (or, when nothing else is queued, writes the `.meta` slot itself). The committer takes every group handed to it, writes ONE `.meta` slot with the
//! highest of their lengths, `fdatasync`s it, and only then advances the durable length and
//! completes the appends, in order. So group N's `.meta` flush overlaps group N+1's data write
//! and flush, and a group costs about one device flush instead of two. While the threads wait
//! for the disk, new appends pile up in the inbox and form the next group.
//!
//! Only one thread writes `.meta` at a time: the committer while it runs jobs; the writer (fence,
//! seal, failure) only after draining the committer (`barrier`). Every write takes the next
//! generation of the last persisted state (`Status::meta`), so slots strictly alternate and the
//! slot overwritten never holds the newest acknowledged state.
//!
//! Appends that arrive early (offset past the current end) wait in a bounded window until the
//! bytes before them arrive, or fail with `GapTimeout`.
//!
//! When the replica is sealed, fails, is deleted or the store shuts down, the writer closes the
//! inbox and exits; later requests are answered by the caller's thread ("inline") from the
//! replica's status.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use cairn_record::{ByteRange, ChunkHandle};
use tokio::sync::oneshot;
use tracing::{error, info, trace, warn};

use super::disk::DiskFile;
use super::meta::Meta;
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
        version: u64,
        offset: u64,
        frames: Bytes,
        reply: oneshot::Sender<Result<u64>>,
    },
    Fence {
        version: u64,
        reply: oneshot::Sender<Result<ReplicaState>>,
    },
    Seal {
        version: u64,
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
    /// The whole file, mapped, once sealed.
    pub(crate) map: Option<Bytes>,
    /// Removed from the store.
    pub(crate) deleted: bool,
}

#[derive(Default)]
struct Inbox {
    msgs: Vec<Msg>,
    appends: usize,
    closed: bool,
}

/// One replica: its files, durable length, status and inbox.
pub(crate) struct Replica<F: DiskFile> {
    pub(crate) handle: ChunkHandle,
    pub(crate) file: F,
    meta_file: F,
    /// Bytes of the file that are durable; reads never go past this.
    pub(crate) durable: AtomicU64,
    pub(crate) status: Mutex<Status>,
    inbox: Mutex<Inbox>,
    wake: Condvar,
    pub(crate) writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<Stats>,
    /// Groups whose data is durable, waiting for the meta committer.
    commits: Mutex<Commits>,
    /// Signals both ways between the writer and the meta committer.
    commit_cv: Condvar,
}

/// A group whose chunk-file bytes are durable; acknowledged once a `.meta` slot covers it.
struct Job {
    /// The group's end: the `acked_len` that covers it.
    end: u64,
    replies: Vec<oneshot::Sender<Result<u64>>>,
}

/// The meta committer's queue.
#[derive(Default)]
struct Commits {
    jobs: Vec<Job>,
    /// The committer is writing a slot for jobs it took.
    busy: bool,
    /// The writer is done: the committer exits once the queue is empty.
    closed: bool,
    /// A `.meta` write or fsync failed: the replica failed; no further jobs are taken.
    failed: bool,
}

impl<F: DiskFile> Replica<F> {
    pub(crate) fn new(
        handle: ChunkHandle,
        file: F,
        meta_file: F,
        len: u64,
        status: Status,
        stats: Arc<Stats>,
    ) -> Replica<F> {
        let has_writer = status.writable();
        Replica {
            handle,
            file,
            meta_file,
            durable: AtomicU64::new(len),
            status: Mutex::new(status),
            inbox: Mutex::new(Inbox {
                closed: !has_writer,
                ..Inbox::default()
            }),
            wake: Condvar::new(),
            writer: Mutex::new(None),
            stats,
            commits: Mutex::new(Commits::default()),
            commit_cv: Condvar::new(),
        }
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().expect("replica status lock poisoned")
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().expect("replica inbox lock poisoned")
    }

    fn commits(&self) -> MutexGuard<'_, Commits> {
        self.commits.lock().expect("replica commit lock poisoned")
    }

    /// Persists one `.meta` slot covering every job (the highest end), then advances the durable
    /// length and completes the jobs' appends in order. On an error the replica fails (the fsync
    /// is never retried), the failed flag is persisted if possible, and every append fails.
    /// Returns whether it succeeded. Only one thread may call this at a time, and none may write
    /// `.meta` meanwhile.
    fn commit(&self, jobs: &mut Vec<Job>) -> bool {
        let Some(end) = jobs.iter().map(|j| j.end).max() else {
            return true;
        };
        let handle = self.handle;
        let base = self.status().meta;
        debug_assert!(!base.failed && !base.sealed, "commit on a closed replica");
        let next = Meta {
            acked_len: end,
            ..base
        };
        match self.write_meta(next) {
            Ok(m) => {
                self.status().meta = m;
                self.durable.store(end, Ordering::Release);
                let n: usize = jobs.iter().map(|j| j.replies.len()).sum();
                self.stats
                    .groups
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                self.stats.appends.fetch_add(n as u64, Ordering::Relaxed);
                trace!(chunk = %handle, groups = jobs.len(), appends = n, acked_len = end, "groups committed");
                for job in jobs.drain(..) {
                    for reply in job.replies {
                        let _ = reply.send(Ok(job.end));
                    }
                }
                true
            }
            Err(e) => {
                error!(chunk = %handle, op = "meta write", error = %e, "replica failed");
                // The same generation again: the slot that just failed, never the other one,
                // which holds the newest persisted state.
                let failed = Meta {
                    failed: true,
                    ..base
                };
                match self.write_meta(failed) {
                    Ok(m) => self.status().meta = m,
                    Err(e) => {
                        error!(chunk = %handle, error = %e, "could not persist the failed flag");
                        self.status().meta.failed = true;
                    }
                }
                self.fail_jobs(jobs);
                false
            }
        }
    }

    fn fail_jobs(&self, jobs: &mut Vec<Job>) {
        let handle = self.handle;
        for job in jobs.drain(..) {
            for reply in job.replies {
                let _ = reply.send(Err(Error::Failed { handle }));
            }
        }
    }

    /// The meta committer thread: runs jobs until the writer closes the queue.
    fn run_committer(&self) {
        let mut jobs = Vec::new();
        loop {
            {
                let mut c = self.commits();
                while c.jobs.is_empty() && !c.closed {
                    c = self
                        .commit_cv
                        .wait(c)
                        .expect("replica commit lock poisoned");
                }
                if c.jobs.is_empty() {
                    return;
                }
                std::mem::swap(&mut c.jobs, &mut jobs);
                if c.failed {
                    // Handed over while the last commit was failing the replica.
                    drop(c);
                    self.fail_jobs(&mut jobs);
                    continue;
                }
                c.busy = true;
            }
            let ok = self.commit(&mut jobs);
            {
                let mut c = self.commits();
                c.busy = false;
                c.failed |= !ok;
            }
            self.commit_cv.notify_all();
            if !ok {
                // Wake the writer (it checks `failed` under the inbox lock before it sleeps).
                drop(self.inbox());
                self.wake.notify_all();
            }
        }
    }

    /// Whether the meta committer failed the replica.
    fn commit_failed(&self) -> bool {
        self.commits().failed
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

    /// Queues `msg` for the writer, or hands it back if there is none.
    pub(crate) fn submit(&self, msg: Msg) -> Result<Submitted> {
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
        let was_empty = q.msgs.is_empty();
        q.msgs.push(msg);
        drop(q);
        if was_empty {
            self.wake.notify_one();
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
    fn fence_inline(&self, version: u64) -> Result<ReplicaState> {
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
    fn seal_inline(&self, version: u64, len: u64) -> Result<ReplicaState> {
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
        self.meta_file.write_all_at(&m.encode(), m.slot_offset())?;
        self.meta_file.sync_data()?;
        self.stats.meta_fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(m)
    }

    /// Closes the inbox and answers whatever is still in it.
    fn close_inbox(&self) {
        let left = {
            let mut q = self.inbox();
            q.closed = true;
            q.appends = 0;
            std::mem::take(&mut q.msgs)
        };
        for msg in left {
            self.answer_inline(msg);
        }
    }

    /// Asks the writer to finish what is queued and exit, and waits for it.
    pub(crate) fn stop_writer(&self) {
        if let Ok(Submitted::Queued) = self.submit(Msg::Stop) {}
        let handle = self
            .writer
            .lock()
            .expect("replica writer lock poisoned")
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            error!(chunk = %self.handle, "chunk writer thread panicked");
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
    version: u64,
    frames: Bytes,
    reply: oneshot::Sender<Result<u64>>,
    deadline: Instant,
}

/// The writer thread's state.
struct Writer<F: DiskFile> {
    rep: Arc<Replica<F>>,
    /// Copy of the persisted `.meta` state. Version, capacity and flags change only by the
    /// writer; `acked_len` and `generation` move on in the committer, so the copy is refreshed
    /// by [`Writer::barrier`] before the writer writes `.meta` itself.
    meta: Meta,
    /// Length of the chunk file whose data is durable, which is also the file length between
    /// groups. At or ahead of the durable (acknowledged) length: groups between the two wait
    /// for the meta committer.
    end: u64,
    /// Frames of the group being formed, contiguous from `end`.
    group: Vec<Bytes>,
    replies: Vec<oneshot::Sender<Result<u64>>>,
    /// Where the group being formed ends.
    group_end: u64,
    window: BTreeMap<u64, Held>,
    window_bytes: usize,
    stopping: bool,
    /// A meta committer thread runs; without one the writer commits each group itself.
    pipelined: bool,
}

/// Closes the committer's queue when the writer ends, even by a panic, so it exits.
struct CloseCommits<'a, F: DiskFile>(&'a Replica<F>);

impl<F: DiskFile> Drop for CloseCommits<'_, F> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.commits.lock() {
            c.closed = true;
        }
        self.0.commit_cv.notify_all();
    }
}

/// Runs the writer of `rep` until it is sealed, fails, or is stopped.
pub(crate) fn run<F: DiskFile>(rep: Arc<Replica<F>>) {
    std::thread::scope(|s| {
        let _close = CloseCommits(&rep);
        let committer = std::thread::Builder::new()
            .name(format!("meta-{}", rep.handle))
            .spawn_scoped(s, || rep.run_committer());
        let pipelined = match committer {
            Ok(_) => true,
            Err(e) => {
                warn!(chunk = %rep.handle, error = %e, "could not spawn the meta committer; committing inline");
                false
            }
        };
        run_writer(&rep, pipelined);
    });
    rep.close_inbox();
}

fn run_writer<F: DiskFile>(rep: &Arc<Replica<F>>, pipelined: bool) {
    let meta = rep.status().meta;
    let end = rep.durable.load(Ordering::Acquire);
    let mut w = Writer {
        rep: rep.clone(),
        meta,
        end,
        group: Vec::new(),
        replies: Vec::new(),
        group_end: end,
        window: BTreeMap::new(),
        window_bytes: 0,
        stopping: false,
        pipelined,
    };
    let mut batch: Vec<Msg> = Vec::new();
    while !w.stopping {
        w.wait_for_work(&mut batch);
        if rep.commit_failed() {
            w.halt();
        }
        for msg in batch.drain(..) {
            if w.stopping {
                rep.answer_inline(msg);
            } else {
                w.handle(msg);
            }
        }
        w.expire_window(Instant::now());
        w.flush();
    }
    // Every group handed over is committed (or failed) before the writer ends.
    w.barrier();
    w.fail_window(|_| Error::Closed { handle: rep.handle });
}

impl<F: DiskFile> Writer<F> {
    /// Blocks until messages are queued or a held append's deadline passes; swaps the queue
    /// into `batch` (so neither side allocates per group).
    fn wait_for_work(&mut self, batch: &mut Vec<Msg>) {
        let rep = &self.rep;
        let mut q = rep.inbox();
        loop {
            if rep.commit_failed() {
                return;
            }
            if !q.msgs.is_empty() {
                std::mem::swap(&mut q.msgs, batch);
                q.appends = 0;
                return;
            }
            match self.window.values().map(|h| h.deadline).min() {
                None => q = rep.wake.wait(q).expect("replica inbox lock poisoned"),
                Some(deadline) => {
                    let now = Instant::now();
                    if deadline <= now {
                        return;
                    }
                    q = rep
                        .wake
                        .wait_timeout(q, deadline - now)
                        .expect("replica inbox lock poisoned")
                        .0;
                }
            }
        }
    }

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
                let r = if self.barrier() {
                    self.on_fence(version)
                } else {
                    Err(Error::Failed {
                        handle: self.rep.handle,
                    })
                };
                let _ = reply.send(r);
            }
            Msg::Seal {
                version,
                len,
                reply,
            } => {
                self.flush();
                let r = if self.barrier() {
                    self.on_seal(version, len)
                } else {
                    Err(Error::Failed {
                        handle: self.rep.handle,
                    })
                };
                let _ = reply.send(r);
            }
            Msg::Stop => {
                self.flush();
                self.barrier();
                self.stopping = true;
            }
        }
    }

    fn check_append(&self, version: u64, offset: u64, len: u64) -> Result<()> {
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
        version: u64,
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

    /// Writes the group and makes it durable, then hands it to the meta committer, which
    /// persists the new acknowledged length and only then completes the group's appends. On a
    /// full disk the file is cut back to the group's start (the last data-durable length) and
    /// the whole group fails; on any other I/O error the replica fails.
    fn flush(&mut self) {
        if self.group.is_empty() {
            return;
        }
        if self.rep.commit_failed() {
            return self.halt();
        }
        let handle = self.rep.handle;
        let start = self.end;
        let new_end = self.group_end;
        assert!(
            self.rep.durable.load(Ordering::Acquire) <= start,
            "the durable length never passes the data-durable end"
        );
        match self.rep.file.size() {
            Ok(len) => assert_eq!(len, start, "write offset must equal the file length"),
            Err(e) => return self.fail(e, "stat"),
        }
        if let Err(e) = self.write_group(start) {
            if is_disk_full(&e) {
                return self.disk_full(start);
            }
            return self.fail(e, "write");
        }
        if let Err(e) = self.rep.file.sync_data() {
            return self.fail(e, "fdatasync");
        }
        self.rep.stats.data_fsyncs.fetch_add(1, Ordering::Relaxed);
        self.end = new_end;
        self.group.clear();
        trace!(chunk = %handle, appends = self.replies.len(), bytes = new_end - start, "group data durable");
        // The acknowledged length must be durable before any append of the group is answered:
        // the committer answers them after its `.meta` fsync.
        let job = Job {
            end: new_end,
            replies: std::mem::take(&mut self.replies),
        };
        // With nothing waiting to be written next there is nothing for the `.meta` flush to
        // overlap: commit here and save the hand-off to the committer (a thread wake-up on the
        // path of every lone group). The committer is idle then and stays so, since only this
        // thread gives it work.
        let inline = !self.pipelined || {
            let idle = {
                let c = self.rep.commits();
                !c.busy && c.jobs.is_empty() && !c.failed
            };
            idle && self.rep.inbox().msgs.is_empty()
        };
        if inline {
            if !self.rep.commit(&mut vec![job]) {
                self.rep.commits().failed = true;
                self.halt();
            }
            return;
        }
        let refused = {
            let mut c = self.rep.commits();
            if c.failed {
                Some(job)
            } else {
                c.jobs.push(job);
                None
            }
        };
        match refused {
            None => self.rep.commit_cv.notify_all(),
            Some(job) => {
                for reply in job.replies {
                    let _ = reply.send(Err(Error::Failed { handle }));
                }
                self.halt();
            }
        }
    }

    /// Waits until the meta committer has committed (or failed) every group handed to it, then
    /// refreshes the writer's copy of the persisted state. Afterwards the writer may write
    /// `.meta` itself, and the durable length is the writer's end. Returns false (and stops the
    /// writer) if the committer failed the replica.
    fn barrier(&mut self) -> bool {
        let failed = {
            let mut c = self.rep.commits();
            while c.busy || !c.jobs.is_empty() {
                c = self
                    .rep
                    .commit_cv
                    .wait(c)
                    .expect("replica commit lock poisoned");
            }
            c.failed
        };
        self.meta = self.rep.status().meta;
        if failed {
            self.halt();
            return false;
        }
        debug_assert_eq!(self.rep.durable.load(Ordering::Acquire), self.end);
        true
    }

    /// The meta committer failed the replica (and persisted the flag if it could): fail what
    /// the writer holds and stop, without touching `.meta` again.
    fn halt(&mut self) {
        let handle = self.rep.handle;
        self.meta.failed = true;
        self.fail_group(|| Error::Failed { handle });
        self.fail_window(|_| Error::Failed { handle });
        self.stopping = true;
    }

    /// One `pwritev` of the whole group, repeated for whatever a short write left.
    fn write_group(&mut self, start: u64) -> io::Result<()> {
        let mut offset = start;
        let mut i = 0;
        while i < self.group.len() {
            let mut n = self.rep.file.write_vectored_at(&self.group[i..], offset)?;
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
            .rep
            .file
            .set_len(start)
            .and_then(|()| self.rep.file.sync_data());
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
        // Groups already handed over have durable data: let the committer finish them first,
        // so that only one thread writes `.meta` and the generations stay in order.
        if !self.barrier() {
            return;
        }
        let next = Meta {
            failed: true,
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

    fn on_fence(&mut self, version: u64) -> Result<ReplicaState> {
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
            let next = Meta {
                version,
                ..self.meta
            };
            match self.rep.write_meta(next) {
                Ok(m) => self.set_meta(m),
                Err(e) => {
                    self.fail(e, "meta write");
                    return Err(Error::Failed { handle });
                }
            }
            info!(chunk = %handle, version, len = self.end, "replica fenced");
        }
        Ok(self.rep.state())
    }

    fn on_seal(&mut self, version: u64, len: u64) -> Result<ReplicaState> {
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
            let cut = self
                .rep
                .file
                .set_len(len)
                .and_then(|()| self.rep.file.sync_data());
            if let Err(e) = cut {
                self.fail(e, "seal truncate");
                return Err(Error::Failed { handle });
            }
            self.rep.durable.store(len, Ordering::Release);
            self.end = len;
            self.group_end = len;
        }
        match self.rep.file.map() {
            Ok(map) => {
                assert_eq!(map.len() as u64, len, "sealed file has the sealed length");
                self.rep.status().map = Some(map);
            }
            Err(e) => {
                warn!(chunk = %handle, error = %e, "could not map sealed replica; reads use pread")
            }
        }
        info!(chunk = %handle, version, len, "replica sealed");
        self.stopping = true;
        Ok(self.rep.state())
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::WriteZero
}
