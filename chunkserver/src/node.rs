//! What each chunkserver RPC does, in domain types: the store, the in-memory chunk states
//! (primary role, readable end, long-poll wake-ups) and the secondaries a primary forwards to.
//! [`crate::service`] converts to and from the wire types around these methods.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use cairn_files::Blocking;
use cairn_record::limits::{CHUNK_HEADER_BYTES, CHUNK_VERSION_MAX, record_payload_bytes_max};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, WriterMark, encode_padding};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::limits::{READ_BYTES_MAX, READ_WAIT_MS_MAX, REORDER_HOLD_MS};
use crate::marks::scan_marks;
use crate::peers::PeerApi;
use crate::primary::{Admission, Batch, Inherited, Primary, Write};
use crate::store::server_disk::ServerDisk;
use crate::store::{ChunkStore, ReplicaState, Store};

/// Reads larger than this run on a blocking thread (every read is a `pread`; a small one of a
/// recently written or read page costs less than the hop to a blocking thread).
const READ_INLINE_BYTES_MAX: usize = 256 << 10;

/// How an append ended (the wire's `AppendStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppendStatus {
    /// Every record is stored.
    Ok,
    /// A prefix is stored; the chunk is full.
    ChunkFull,
    /// Nothing stored: the batch starts past the writer's next sequence.
    OutOfOrder,
}

/// The answer to an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppendOutcome {
    pub(crate) status: AppendStatus,
    pub(crate) offsets: Vec<ChunkOffset>,
    /// Batch indices of duplicates whose bytes could not be compared (see
    /// [`crate::primary::Admitted::unverified`]).
    pub(crate) unverified: Vec<u32>,
    pub(crate) commit_offset: ChunkOffset,
    pub(crate) expected_sequence: u64,
}

/// The answer to a read.
#[derive(Clone, Debug)]
pub(crate) struct ReadOutcome {
    pub(crate) offset: ChunkOffset,
    pub(crate) data: Bytes,
    pub(crate) readable_end: ChunkOffset,
    pub(crate) sealed: bool,
    pub(crate) version: ChunkVersion,
    /// Open chunk read on its primary: `readable_end` is the commit offset, which covers every
    /// acknowledged record. A secondary's lags (the last commit offset forwarded to it).
    pub(crate) primary: bool,
}

/// The answer to a fence.
#[derive(Clone, Debug)]
pub(crate) struct FenceOutcome {
    pub(crate) state: ReplicaState,
    /// Per writer, its last record in `[32, marks_through)`: the most recently active
    /// writers first, at most `cairn_proto::WRITER_MARKS_MAX`.
    pub(crate) writer_marks: Vec<WriterMark>,
    /// The end of the prefix the marks cover: the commit offset this replica knows (or the
    /// start of its first bad range below it).
    pub(crate) marks_through: ChunkOffset,
    /// The primary's commit offset at the fence, when this replica holds the chunk's primary
    /// role (since it created the replica in this process): every acknowledged byte and none
    /// past (`FenceResponse.primary_commit_offset`).
    pub(crate) primary_commit: Option<ChunkOffset>,
}

/// A `CreateReplica` for the chunk's primary.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrimaryRole {
    pub(crate) secondaries: Vec<String>,
    pub(crate) inherited: std::collections::HashMap<cairn_record::WriterId, Inherited>,
}

/// What this chunkserver keeps in memory about one replica.
pub(crate) struct Chunk {
    handle: ChunkHandle,
    /// Largest record payload of this chunk.
    payload_bytes_max: usize,
    /// The readable end of the open replica: the commit offset on the primary, the last one
    /// forwarded on a secondary. Also pinged (unchanged) on fence, seal, delete and failure,
    /// so long polls look again.
    readable: watch::Sender<ChunkOffset>,
    /// Present on the chunk's primary (lost in a restart).
    primary: Option<Mutex<Primary>>,
    /// Notified whenever the primary admits a batch, so a batch that arrived ahead of its
    /// writer's earlier one can look again instead of bouncing back to the client.
    admitted: tokio::sync::Notify,
    /// The highest commit offset this process knows for the chunk: the primary's own, or the
    /// last one forwarded to a secondary; the header (32) after a restart, since it is not
    /// persisted. Every replica holds `[32, known_commit)` durably, so the fence computes the
    /// writer marks it hands on over that prefix only. Only grows.
    known_commit: AtomicU64,
}

impl Chunk {
    fn new(handle: ChunkHandle, capacity: u64, primary: Option<Primary>) -> Chunk {
        Chunk {
            handle,
            payload_bytes_max: record_payload_bytes_max(capacity),
            readable: watch::Sender::new(ChunkOffset::FIRST_FRAME),
            primary: primary.map(Mutex::new),
            admitted: tokio::sync::Notify::new(),
            known_commit: AtomicU64::new(CHUNK_HEADER_BYTES as u64),
        }
    }

    /// Raises the known commit offset (see [`Chunk::known_commit`]).
    fn learn_commit(&self, commit: ChunkOffset) {
        self.known_commit.fetch_max(commit.0, Ordering::AcqRel);
    }

    fn primary(&self) -> Option<MutexGuard<'_, Primary>> {
        self.primary
            .as_ref()
            .map(|p| p.lock().expect("primary lock poisoned"))
    }

    /// Wakes long polls without changing the readable end.
    fn ping(&self) {
        self.readable.send_modify(|_| {});
    }

    /// Raises the readable end (never lowers it).
    fn raise_readable(&self, end: ChunkOffset) {
        self.readable.send_if_modified(|r| {
            let grew = end > *r;
            if grew {
                *r = end;
            }
            grew
        });
    }

    /// Records the outcome of the write at `offset` (called by its replication task).
    fn finish_write(&self, offset: ChunkOffset, result: &Result<()>) {
        let mut p = self.primary().expect("only a primary writes");
        match result {
            Ok(()) => {
                // A fenced primary's commit offset is final: the fence reported it to the master,
                // which seals the chunk there. A write that completes after the fence is durable
                // everywhere but is neither published to readers nor acknowledged (its waiter
                // finds the chunk closed); its client resends it on the next chunk.
                if let Some(commit) = p.complete(offset)
                    && !p.fenced()
                {
                    self.learn_commit(commit);
                    // Under the lock, so commit offsets are published in order.
                    self.readable.send_replace(commit);
                }
            }
            Err(e) => {
                if !p.closed() {
                    warn!(chunk = %self.handle, %offset, error = %e, "write failed; chunk broken");
                }
                p.fail();
                drop(p);
                self.ping();
            }
        }
    }
}

/// The chunkserver's state.
pub(crate) struct Node {
    pub(crate) store: Arc<Store<ServerDisk>>,
    chunks: RwLock<BTreeMap<ChunkHandle, Arc<Chunk>>>,
    pub(crate) peers: Arc<dyn PeerApi>,
    rpc_timeout: Duration,
    /// Bandwidth bound of re-replication into this chunkserver.
    pub(crate) replicate_bytes_per_sec: u64,
    /// When the bandwidth bound lets the next copied bytes in: every copy into this
    /// chunkserver books its reads on this one clock, so they share the bound.
    pub(crate) replicate_clock: Mutex<Instant>,
    /// Test mode (feature `test-faults`): abort as a primary before forwarding this many-th
    /// write.
    #[cfg(feature = "test-faults")]
    abort_before_forward_after: Option<u64>,
    /// Writes started as a primary (counted only in that test mode).
    #[cfg(feature = "test-faults")]
    primary_writes: std::sync::atomic::AtomicU64,
    /// True once the server is shutting down: long polls return.
    stopping: watch::Receiver<bool>,
    /// This chunkserver's advertised address (HOST:PORT), to refuse copies from itself.
    address: String,
    /// Where blocking store work runs.
    blocking: Blocking,
}

impl Node {
    /// A node over `store`.
    pub(crate) fn new(
        store: Arc<Store<ServerDisk>>,
        peers: Arc<dyn PeerApi>,
        rpc_timeout: Duration,
        replicate_bytes_per_sec: u64,
        stopping: watch::Receiver<bool>,
    ) -> Node {
        Node {
            store,
            chunks: RwLock::new(BTreeMap::new()),
            peers,
            rpc_timeout,
            replicate_bytes_per_sec,
            replicate_clock: Mutex::new(Instant::now()),
            #[cfg(feature = "test-faults")]
            abort_before_forward_after: None,
            #[cfg(feature = "test-faults")]
            primary_writes: std::sync::atomic::AtomicU64::new(0),
            stopping,
            address: String::new(),
            blocking: Blocking::Threads,
        }
    }

    /// Runs blocking store work (create, seal, delete, large reads, the fence scan) on
    /// `blocking` instead of tokio's blocking threads.
    pub(crate) fn with_blocking(mut self, blocking: Blocking) -> Node {
        self.blocking = blocking;
        self
    }

    /// Where this node's blocking store work runs.
    pub(crate) fn blocking(&self) -> Blocking {
        self.blocking
    }

    /// Runs blocking store work as this node's [`Blocking`] says.
    pub(crate) async fn offload<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.blocking.run(f).await
    }

    /// Names this chunkserver's advertised address (peers and the master use it), so a
    /// `Replicate` naming itself as the source is refused.
    pub(crate) fn with_address(mut self, address: String) -> Node {
        self.address = address;
        self
    }

    /// This chunkserver's advertised address (empty in unit tests that do not set it).
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Test mode (`--test-abort-before-forward-after N`, feature `test-faults`): abort the
    /// process as a primary right after queueing the N-th write locally, before forwarding it.
    /// Never for real data.
    #[cfg(feature = "test-faults")]
    pub(crate) fn with_test_abort_before_forward(mut self, after: Option<u64>) -> Node {
        if let Some(n) = after {
            warn!(
                writes = n,
                "TEST MODE: aborting before forwarding the N-th write as a primary"
            );
        }
        self.abort_before_forward_after = after;
        self
    }

    #[cfg(feature = "test-faults")]
    fn abort_before_this_forward(&self) -> bool {
        self.abort_before_forward_after.is_some_and(|n| {
            self.primary_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1
                == n
        })
    }

    /// Every replica's state, and whether this process holds its primary role, for reports to
    /// the master.
    pub(crate) fn replicas(&self) -> Vec<(ReplicaState, bool)> {
        let chunks = self.chunks.read().expect("chunks lock poisoned");
        self.store
            .list()
            .into_iter()
            .map(|s| {
                let primary = chunks.get(&s.handle).is_some_and(|c| c.primary.is_some());
                (s, primary)
            })
            .collect()
    }

    /// The in-memory state of `handle`, created (without a primary role) for a replica the
    /// store has but this process has not seen yet (after a restart). `NotFound` otherwise.
    ///
    /// Only unsealed replicas keep their state in the map: a sealed one needs none (no writes,
    /// no long polls to wake, no commit offset to learn), so it gets a throwaway one, and a
    /// chunkserver's memory for its sealed replicas is the store's small per-replica state
    /// alone (see [`Node::seal`], which drops the entry).
    fn chunk(&self, handle: ChunkHandle) -> Result<Arc<Chunk>> {
        if let Some(c) = self
            .chunks
            .read()
            .expect("chunks lock poisoned")
            .get(&handle)
        {
            return Ok(c.clone());
        }
        let state = self.store.state(handle)?;
        if state.sealed {
            return Ok(Arc::new(Chunk::new(handle, state.capacity, None)));
        }
        let mut chunks = self.chunks.write().expect("chunks lock poisoned");
        // Sealed since the check above: its seal's `forget_sealed` may already have run.
        if self.store.state(handle)?.sealed {
            return Ok(Arc::new(Chunk::new(handle, state.capacity, None)));
        }
        let chunk = chunks
            .entry(handle)
            .or_insert_with(|| Arc::new(Chunk::new(handle, state.capacity, None)));
        Ok(chunk.clone())
    }

    /// Whether this process holds the primary role of `handle` and has not been fenced or
    /// broken there: appends to it can still be acknowledged.
    pub(crate) fn is_active_primary(&self, handle: ChunkHandle) -> bool {
        let chunks = self.chunks.read().expect("chunks lock poisoned");
        chunks
            .get(&handle)
            .and_then(|c| c.primary())
            .is_some_and(|p| !p.closed())
    }

    /// Creates an empty replica; with `primary`, this chunkserver becomes its primary.
    /// Repeating the same create is answered as a success.
    pub(crate) async fn create(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        capacity: u64,
        primary: Option<PrimaryRole>,
    ) -> Result<()> {
        // Refuse new chunks at the high-watermark: a replica that may not fit would fail later.
        if let Some(free) = self.store.disk().free_bytes(self.store.dir())
            && free < capacity
        {
            warn!(chunk = %handle, free, need = capacity, "refusing a new replica: disk nearly full");
            return Err(Error::NoSpace {
                handle,
                free,
                need: capacity,
            });
        }
        let store = self.store.clone();
        let created = self
            .offload(move || store.create(handle, version, capacity))
            .await;
        match created {
            Ok(_) => {}
            Err(Error::AlreadyExists { .. }) => {
                // A retried create (the master resends after a timeout) is fine if nothing
                // differs and nothing was written yet.
                let s = self.store.state(handle)?;
                let same = s.version == version && s.capacity == capacity && !s.sealed;
                let empty = s.len == CHUNK_HEADER_BYTES as u64;
                let has_role = self
                    .chunks
                    .read()
                    .expect("chunks lock poisoned")
                    .get(&handle)
                    .is_some_and(|c| c.primary.is_some());
                if !same || (primary.is_some() && !has_role && !empty) {
                    return Err(Error::AlreadyExists { handle });
                }
                if has_role || primary.is_none() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
        let role =
            primary.map(|r| Primary::new(handle, version, capacity, r.secondaries, r.inherited));
        let chunk = Arc::new(Chunk::new(handle, capacity, role));
        self.chunks
            .write()
            .expect("chunks lock poisoned")
            .insert(handle, chunk);
        Ok(())
    }

    /// The primary's append (ARCHITECTURE.md, "Record append", steps 4–6).
    pub(crate) async fn append(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        frames: Bytes,
        acked_through: u64,
        writer_epoch: u64,
    ) -> Result<AppendOutcome> {
        let chunk = self.chunk(handle)?;
        if chunk.primary.is_none() {
            return Err(Error::NotPrimary { handle });
        }
        let batch = Batch::parse(&frames, chunk.payload_bytes_max)
            .map_err(|reason| Error::InvalidBatch { handle, reason })?;
        // Concurrent RPCs of one connection reach this point in any order. A batch that is
        // ahead of its writer's next sequence waits (bounded) for the earlier batch to be
        // admitted rather than bouncing: a bounce drains the client's whole in-flight window.
        let hold_until = Instant::now() + Duration::from_millis(REORDER_HOLD_MS);
        let (admitted, replication) = loop {
            let admitted_elsewhere = chunk.admitted.notified();
            tokio::pin!(admitted_elsewhere);
            admitted_elsewhere.as_mut().enable();
            // The lock is held only inside this block: no await may see it.
            let step = {
                let mut guard = chunk.primary().expect("checked above");
                let p = &mut *guard;
                match p.admit(version, &batch, acked_through, writer_epoch)? {
                    Admission::Admitted(admitted) => {
                        let replication = admitted
                            .write
                            .as_ref()
                            .map(|w| self.start_write(&chunk, p, w, &frames));
                        Ok((admitted, replication))
                    }
                    Admission::Full => Err((
                        AppendOutcome {
                            status: AppendStatus::ChunkFull,
                            offsets: Vec::new(),
                            unverified: Vec::new(),
                            commit_offset: p.commit(),
                            expected_sequence: 0,
                        },
                        p.end(),
                    )),
                    Admission::OutOfOrder { expected_sequence } => Err((
                        AppendOutcome {
                            status: AppendStatus::OutOfOrder,
                            offsets: Vec::new(),
                            unverified: Vec::new(),
                            commit_offset: p.commit(),
                            expected_sequence,
                        },
                        ChunkOffset::ZERO,
                    )),
                }
            };
            match step {
                Ok(taken) => {
                    chunk.admitted.notify_waiters();
                    break taken;
                }
                Err((out, _)) if out.status == AppendStatus::OutOfOrder => {
                    if tokio::time::timeout_at(hold_until, admitted_elsewhere)
                        .await
                        .is_err()
                    {
                        return Ok(out);
                    }
                }
                Err((mut out, end)) => {
                    // Answer CHUNK_FULL only once the bytes that filled the chunk are durable
                    // everywhere (or the chunk broke): the client's seal comes next, and a fence
                    // that overtook the last forwards would cut the chunk back and waste it.
                    let _ = self.wait_commit(&chunk, end).await;
                    out.commit_offset = *chunk.readable.borrow();
                    return Ok(out);
                }
            }
        };
        if let Some(task) = replication {
            task.await
                .map_err(|_| Error::Broken { handle })?
                .map_err(|e| match e {
                    // The primary's own store failed the write (fsync error, full disk): the
                    // chunk is broken, which is UNAVAILABLE, so the client seals it and retries
                    // on the next chunk (ARCHITECTURE.md, "Record append", step 5). The cause
                    // was logged by `finish_write`.
                    Error::Failed { .. }
                    | Error::DiskFull { .. }
                    | Error::Corrupt { .. }
                    | Error::Io { .. } => Error::Broken { handle },
                    e => e,
                })?;
        }
        // Read-after-ack: the acknowledgement goes out only once the commit offset (what
        // readers of the open chunk are served up to) covers these records. A write can be
        // durable everywhere while an earlier one is still in flight; acknowledging it then
        // would let a reader that starts after the ack stop short of the record.
        let written_end = admitted
            .write
            .as_ref()
            .map_or(ChunkOffset::ZERO, |w| w.offset + w.len());
        let wait_commit = admitted.wait_commit.max(written_end);
        if wait_commit > ChunkOffset::ZERO {
            self.wait_commit(&chunk, wait_commit).await?;
        }
        debug!(chunk = %handle, records = admitted.offsets.len(), full = admitted.full, "appended");
        Ok(AppendOutcome {
            status: if admitted.full {
                AppendStatus::ChunkFull
            } else {
                AppendStatus::Ok
            },
            offsets: admitted.offsets,
            unverified: admitted.unverified,
            commit_offset: *chunk.readable.borrow(),
            expected_sequence: 0,
        })
    }

    /// Queues `w` on the local store and forwards it to every secondary, all before returning
    /// (so under the chunk lock, in offset order); a task awaits them all and reports back to
    /// the chunk, even if the client goes away.
    fn start_write(
        &self,
        chunk: &Arc<Chunk>,
        p: &Primary,
        w: &Write,
        frames: &Bytes,
    ) -> JoinHandle<Result<()>> {
        let handle = chunk.handle;
        let version = p.version();
        let bytes = if w.padding_bytes == 0 {
            // Zero-copy: the request's own buffer goes to the disk and the secondaries.
            frames.slice(w.frames.clone())
        } else {
            // Once per chunk: the stored prefix and the padding, in one buffer.
            let mut out = Vec::with_capacity(w.len() as usize);
            out.extend_from_slice(&frames[w.frames.clone()]);
            encode_padding(&mut out, w.padding_bytes)
                .expect("padding up to an aligned capacity is a positive multiple of 8");
            Bytes::from(out)
        };
        let local = self
            .store
            .append(handle, version, w.offset.0, bytes.clone());
        #[cfg(feature = "test-faults")]
        if self.abort_before_this_forward() {
            // Fault test: the primary dies between its local write and its forwards.
            eprintln!("TEST MODE: aborting between the local write and the forwards");
            std::process::abort();
        }
        let commit = p.commit();
        let forwards: Vec<_> = p
            .secondaries()
            .iter()
            .map(|peer| {
                self.peers
                    .forward(peer, handle, version, w.offset, bytes.clone(), commit)
            })
            .collect();
        let chunk = chunk.clone();
        let offset = w.offset;
        let timeout = self.rpc_timeout;
        tokio::spawn(async move {
            // One task drives the local write and every forward: each answer wakes it
            // directly, with no task per forward in between.
            let all = async {
                let (local, forwarded) =
                    futures_util::future::join(local, futures_util::future::join_all(forwards))
                        .await;
                local?;
                forwarded.into_iter().try_for_each(|f| f.map(|_| ()))
            };
            let result = tokio::time::timeout(timeout, all)
                .await
                .unwrap_or(Err(Error::Timeout {
                    handle,
                    timeout_ms: timeout.as_millis() as u64,
                }));
            chunk.finish_write(offset, &result);
            result
        })
    }

    /// Waits until the commit offset reaches `end` (duplicates still in flight).
    async fn wait_commit(&self, chunk: &Chunk, end: ChunkOffset) -> Result<()> {
        let handle = chunk.handle;
        let mut rx = chunk.readable.subscribe();
        let deadline = Instant::now() + self.rpc_timeout;
        loop {
            if *rx.borrow_and_update() >= end {
                return Ok(());
            }
            if chunk.primary().is_some_and(|p| p.closed()) {
                return Err(Error::Broken { handle });
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(Error::Timeout {
                    handle,
                    timeout_ms: self.rpc_timeout.as_millis() as u64,
                });
            }
        }
    }

    /// A secondary's write: the primary's bytes at exactly `offset`.
    pub(crate) async fn forward(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        offset: ChunkOffset,
        frames: Bytes,
        commit_offset: ChunkOffset,
    ) -> Result<ChunkOffset> {
        let chunk = self.chunk(handle)?;
        // The store works in file positions (as the disk seam does).
        let durable = ChunkOffset(self.store.append(handle, version, offset.0, frames).await?);
        // The primary's commit offset covers bytes durable on every replica, this one included.
        chunk.learn_commit(commit_offset.min(durable));
        chunk.raise_readable(commit_offset.min(durable));
        Ok(durable)
    }

    /// Bytes `[offset, min(offset + max_bytes, readable_end))`, waiting up to `wait_ms` for
    /// new bytes or a seal when nothing is readable at `offset` of an open chunk.
    pub(crate) async fn read(
        &self,
        handle: ChunkHandle,
        offset: ChunkOffset,
        max_bytes: u32,
        wait_ms: u32,
    ) -> Result<ReadOutcome> {
        let chunk = self.chunk(handle)?;
        let max_bytes = match max_bytes as usize {
            0 => READ_BYTES_MAX,
            n => n.min(READ_BYTES_MAX),
        };
        let wait = Duration::from_millis((wait_ms as u64).min(READ_WAIT_MS_MAX));
        let deadline = Instant::now() + wait;
        let mut rx = chunk.readable.subscribe();
        let mut stopping = self.stopping.clone();
        let (state, readable_end) = loop {
            let commit = *rx.borrow_and_update();
            let state = self.store.state(handle)?;
            // The store works in file positions (as the disk seam does).
            let end = if state.sealed {
                ChunkOffset(state.acked_len)
            } else {
                commit.min(ChunkOffset(state.len))
            };
            if state.sealed || offset < end || wait.is_zero() || *stopping.borrow() {
                break (state, end);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break (state, end) },
                res = stopping.changed() => if res.is_err() { break (state, end) },
                _ = tokio::time::sleep_until(deadline) => break (state, end),
            }
        };
        let n = (readable_end.max(offset) - offset).min(max_bytes as u64) as usize;
        let data = if n == 0 {
            Bytes::new()
        } else if n <= READ_INLINE_BYTES_MAX {
            self.store.read(handle, offset.0, n)?
        } else {
            let store = self.store.clone();
            self.offload(move || store.read(handle, offset.0, n))
                .await?
        };
        Ok(ReadOutcome {
            offset,
            data,
            readable_end,
            sealed: state.sealed,
            version: state.version,
            primary: !state.sealed && chunk.primary.is_some(),
        })
    }

    /// The master's fence: refuse appends, adopt `new_version`, report the durable length and
    /// the writers' marks over the prefix every replica holds (ARCHITECTURE.md, "Seal").
    pub(crate) async fn fence(
        &self,
        handle: ChunkHandle,
        new_version: ChunkVersion,
    ) -> Result<FenceOutcome> {
        if new_version > ChunkVersion::MAX {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "chunk {handle}: fence to version {new_version} is above the largest version \
                     a master issues ({CHUNK_VERSION_MAX}); forged or broken"
                ),
            });
        }
        let chunk = self.chunk(handle)?;
        let is_primary = chunk.primary().is_some();
        if let Some(mut p) = chunk.primary()
            && new_version > p.version()
        {
            p.fence();
        }
        let state = self.store.fence(handle, new_version).await;
        chunk.ping();
        let state = state?;
        let store = self.store.clone();
        // Read after the fence: no commit offset can be learnt for bytes this fence cut off.
        let through = chunk
            .known_commit
            .load(Ordering::Acquire)
            .min(state.len)
            .max(CHUNK_HEADER_BYTES as u64);
        let scanned = self
            .offload(move || {
                scan_marks(
                    |offset, len| store.read(handle, offset, len),
                    through,
                    READ_BYTES_MAX,
                    cairn_proto::WRITER_MARKS_MAX,
                )
            })
            .await?;
        info!(
            chunk = %handle,
            version = %state.version,
            len = state.len,
            marks_through = scanned.through,
            writers = scanned.marks.len(),
            "fenced"
        );
        // The primary acknowledges a batch only once its commit offset covers it, and a fenced
        // primary acknowledges nothing more: read after the fence, this is final.
        let primary_commit = is_primary.then(|| {
            ChunkOffset(
                chunk
                    .known_commit
                    .load(Ordering::Acquire)
                    .max(CHUNK_HEADER_BYTES as u64),
            )
        });
        Ok(FenceOutcome {
            state,
            writer_marks: scanned.marks,
            marks_through: ChunkOffset(scanned.through),
            primary_commit,
        })
    }

    /// The master's seal at `length` (at most this replica's durable length).
    pub(crate) async fn seal(
        &self,
        handle: ChunkHandle,
        version: ChunkVersion,
        length: u64,
    ) -> Result<ReplicaState> {
        let chunk = self.chunk(handle)?;
        if let Some(mut p) = chunk.primary() {
            p.fence();
        }
        let store = self.store.clone();
        let state = self
            .offload(move || store.seal(handle, version, length))
            .await;
        if state.is_ok() {
            // Sealed for good: the primary's writer marks, the watch and the rest go. Long
            // polls hold their own reference and are woken by the ping below.
            self.forget_sealed(handle);
        }
        chunk.ping();
        state
    }

    /// Drops the in-memory state of `handle` if its replica is sealed (see [`Node::chunk`]).
    pub(crate) fn forget_sealed(&self, handle: ChunkHandle) {
        let sealed = self.store.state(handle).is_ok_and(|s| s.sealed);
        if sealed {
            self.chunks
                .write()
                .expect("chunks lock poisoned")
                .remove(&handle);
        }
    }

    /// Deletes the replica and forgets the chunk.
    pub(crate) async fn delete(&self, handle: ChunkHandle) -> Result<()> {
        let store = self.store.clone();
        let result = self.offload(move || store.delete(handle)).await;
        let chunk = self
            .chunks
            .write()
            .expect("chunks lock poisoned")
            .remove(&handle);
        if let Some(chunk) = chunk {
            if let Some(mut p) = chunk.primary() {
                p.fence();
            }
            chunk.ping();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_record::{RecordId, encode_record};

    fn node(dir: &std::path::Path) -> Node {
        let store = Store::open(dir, ServerDisk::Fs(crate::FsDisk)).expect("open the store");
        let (_stop, stopping) = watch::channel(false);
        Node::new(
            Arc::new(store),
            Arc::new(crate::peers::GrpcPeers::new(
                cairn_proto::net::TcpConnector::shared(),
                Duration::from_secs(1),
            )),
            Duration::from_secs(1),
            1 << 30,
            stopping,
        )
    }

    fn in_memory(n: &Node, handle: ChunkHandle) -> bool {
        n.chunks.read().expect("chunks lock").contains_key(&handle)
    }

    // Proves (issue 8 item 12): a sealed replica keeps no per-chunk state in the RPC layer (the
    // primary's writer marks, the watch, the notify): the seal drops it, and reads, fences and
    // seals of a sealed replica (also one found at startup) never bring it back. So what a
    // chunkserver holds per sealed replica is the store's small state alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sealed_replicas_keep_no_per_chunk_state() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let n = node(tmp.path());
        let h = ChunkHandle(0xa11);
        let role = PrimaryRole::default();
        n.create(h, ChunkVersion(1), 1 << 16, Some(role))
            .await
            .expect("create");
        assert!(in_memory(&n, h), "an open replica has its state");
        let mut frames = Vec::new();
        let id = RecordId {
            writer: cairn_record::WriterId(5),
            sequence: 1,
        };
        encode_record(&mut frames, id, b"r1", 1 << 20).expect("encode");
        let out = n
            .append(h, ChunkVersion(1), Bytes::from(frames), 0, 0)
            .await
            .expect("append on a primary without secondaries");
        assert_eq!(out.offsets, vec![ChunkOffset::FIRST_FRAME]);
        let fenced = n.fence(h, ChunkVersion(2)).await.expect("fence");
        assert_eq!(fenced.writer_marks.len(), 1);
        n.seal(h, ChunkVersion(2), fenced.state.len)
            .await
            .expect("seal");
        assert!(!in_memory(&n, h), "the seal drops the chunk's state");
        let read = n
            .read(h, ChunkOffset::FIRST_FRAME, 0, 0)
            .await
            .expect("read the sealed replica");
        assert!(read.sealed && !read.primary && !read.data.is_empty());
        n.fence(h, ChunkVersion(2))
            .await
            .expect("fence a sealed replica again");
        n.seal(h, ChunkVersion(2), fenced.state.len)
            .await
            .expect("repeat the seal");
        assert!(!in_memory(&n, h), "nothing brings it back");
        drop(n);
        // After a restart: reading a sealed replica creates no state either.
        let n = node(tmp.path());
        n.read(h, ChunkOffset::FIRST_FRAME, 0, 0)
            .await
            .expect("read after restart");
        assert!(!in_memory(&n, h));
    }
}
