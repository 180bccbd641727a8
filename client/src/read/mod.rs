//! [`Replay`] and [`Tail`]: a log's records in order, duplicates dropped, damage reported.
//!
//! Both walk the log's chunks in order. A sealed chunk is read from any replica (rotating on
//! errors) up to its sealed length; an open chunk from its primary up to the commit offset.
//! Ranges of up to [`READ_RANGE_BYTES`](crate::limits::READ_RANGE_BYTES) are read with
//! [`cairn_record::FrameReader`] on the client; payloads are slices of the received buffers.

mod range;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1;
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, RecordId, WriterId};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{ChunkStat, ChunkState, Client, request};
use crate::error::{Code, Error, Result};
use crate::limits::{READ_RETRY_WINDOW, READ_TIMEOUT, TAIL_POLL_INTERVAL, TAIL_WAIT_MS, backoff};
use range::{Fetched, RangeItem, Source, read_range};

/// Options of [`Client::replay`] and [`Client::tail`]: [`ReplayOptions::default`] and the
/// `with_…` methods (more options may be added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayOptions {
    /// Keep every copy of a record appended more than once (by default only the first copy of
    /// each `(writer, sequence)` is returned: a record is dropped when its writer already had
    /// a record with this or a higher sequence).
    pub keep_duplicates: bool,
}

impl ReplayOptions {
    /// With [`ReplayOptions::keep_duplicates`] set to `keep`.
    #[must_use]
    pub fn with_keep_duplicates(mut self, keep: bool) -> ReplayOptions {
        self.keep_duplicates = keep;
        self
    }
}

/// Where [`Client::tail`] starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TailFrom {
    /// From the log's first record (a replay, then new records).
    #[default]
    Start,
    /// Only records appended after the tail started.
    End,
}

/// One step of a replay or tail. More kinds of events may be added: a `match` needs a
/// wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayEvent {
    /// A record.
    Record {
        /// Its id (writer and sequence).
        id: RecordId,
        /// Index of the chunk holding it.
        chunk: u32,
        /// File offset of its frame in that chunk.
        offset: ChunkOffset,
        /// The payload (a slice of the read buffer, not a copy).
        payload: Bytes,
    },
    /// Bytes that no replica had whole: whatever records they held are not returned.
    Skipped {
        /// Index of the chunk.
        chunk: u32,
        /// File offset of the first bad byte.
        offset: ChunkOffset,
        /// Bytes skipped.
        len: u64,
        /// Why, in words.
        reason: String,
    },
}

/// Counts of a replay or tail so far (more counts may be added).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayStats {
    /// Records returned.
    pub records: u64,
    /// Payload bytes of the records returned.
    pub payload_bytes: u64,
    /// Copies dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Bytes of padding passed over.
    pub padding_bytes: u64,
    /// `Skipped` events returned.
    pub skipped_ranges: u64,
    /// Bytes covered by them.
    pub skipped_bytes: u64,
}

/// A replay of a log: call [`Replay::next`] until it returns `None`, then read
/// [`Replay::stats`]. It returns the records of the chunks the log had when it started (the
/// open one up to its commit offset at the time it is read).
#[derive(Debug)]
pub struct Replay {
    reader: Reader,
}

impl Replay {
    /// The next event; `None` at the end. After an `Err` the replay is over.
    pub async fn next(&mut self) -> Option<Result<ReplayEvent>> {
        self.reader.next().await
    }

    /// Counts so far (final once `next` returned `None`).
    pub fn stats(&self) -> ReplayStats {
        self.reader.stats
    }
}

/// A tail of a log: like [`Replay`], then it waits for new records (long-poll reads of the
/// open chunk) and follows the log across chunk rolls. [`Tail::next`] never returns `None`;
/// it ends with an `Err` only when the log is deleted or stays unreadable. Drop it to stop.
#[derive(Debug)]
pub struct Tail {
    reader: Reader,
}

impl Tail {
    /// The next event, waiting for one as long as it takes.
    pub async fn next(&mut self) -> Option<Result<ReplayEvent>> {
        self.reader.next().await
    }

    /// Counts so far.
    pub fn stats(&self) -> ReplayStats {
        self.reader.stats
    }
}

impl Client {
    /// Replays the log at `path` (see [`Replay`]). Fails with [`Error::LogNotFound`] if absent.
    ///
    /// ```no_run
    /// # async fn f(client: cairn_client::Client) -> cairn_client::Result<()> {
    /// let mut replay = client.replay("/events", Default::default()).await?;
    /// while let Some(event) = replay.next().await {
    ///     if let cairn_client::ReplayEvent::Record { payload, .. } = event? {
    ///         println!("{}", String::from_utf8_lossy(&payload));
    ///     }
    /// }
    /// eprintln!("{:?}", replay.stats());
    /// # Ok(()) }
    /// ```
    pub async fn replay(&self, path: &str, options: ReplayOptions) -> Result<Replay> {
        let reader = Reader::start(self.clone(), path, options, None).await?;
        Ok(Replay { reader })
    }

    /// Follows the log at `path` from `from` (see [`Tail`]). Fails with
    /// [`Error::LogNotFound`] if absent.
    pub async fn tail(&self, path: &str, from: TailFrom, options: ReplayOptions) -> Result<Tail> {
        let reader = Reader::start(self.clone(), path, options, Some(from)).await?;
        Ok(Tail { reader })
    }
}

/// Failed reads of an open chunk in a row, the last answered `NOT_FOUND`, before a reader asks
/// the master to seal it (with backoff, about a second: well past the moment between an
/// allocation being logged, when the chunk is listed, and its replicas being created).
const NOT_FOUND_READS_BEFORE_SEAL: u32 = 5;

/// Drops copies: a record is a copy when its writer already had a record with this or a higher
/// sequence. Sound because a primary stores each writer's first copies in sequence order
/// (ARCHITECTURE.md, "Record append"), so a lower sequence after a higher one is a resend.
#[derive(Debug, Default)]
struct Dedupe {
    /// Highest sequence seen per writer.
    marks: HashMap<WriterId, u64>,
}

impl Dedupe {
    /// Whether `id` is the first copy (and remembers it).
    fn first_copy(&mut self, id: RecordId) -> bool {
        let mark = self.marks.entry(id.writer).or_insert(0);
        if id.sequence <= *mark {
            return false;
        }
        *mark = id.sequence;
        true
    }
}

/// The chunk being read.
#[derive(Debug)]
struct Cursor {
    index: u32,
    handle: ChunkHandle,
    /// The chunk's version in the master's last answer (a reader's seal request names it).
    version: ChunkVersion,
    /// Sealed chunks: the end of a lost tail past the sealed length (`ZERO`: none).
    lost_end: ChunkOffset,
    /// Replica addresses; for an open chunk the primary comes first.
    sources: Vec<String>,
    preferred: usize,
    /// Next file offset to read.
    pos: ChunkOffset,
    /// The readable end when known for good (sealed length).
    end: Option<ChunkOffset>,
}

impl Cursor {
    fn new(c: &ChunkStat) -> Cursor {
        let mut cursor = Cursor {
            index: c.index,
            handle: c.handle,
            version: c.version,
            lost_end: ChunkOffset::ZERO,
            sources: Vec::new(),
            preferred: 0,
            pos: ChunkOffset::FIRST_FRAME,
            end: None,
        };
        cursor.update(c);
        cursor
    }

    /// Takes the master's newer view of this chunk (sealed now, other replicas).
    fn update(&mut self, c: &ChunkStat) {
        let mut sources = Vec::new();
        if c.state == ChunkState::Open
            && let Some(p) = &c.primary
        {
            sources.push(p.clone());
        }
        for r in &c.replicas {
            if !sources.contains(r) {
                sources.push(r.clone());
            }
        }
        self.sources = sources;
        self.preferred = 0;
        self.version = c.version;
        if c.state == ChunkState::Sealed {
            self.end = Some(c.length.max(ChunkOffset::FIRST_FRAME));
            self.lost_end = c.lost_end;
        }
    }
}

#[derive(Debug)]
struct Reader {
    client: Client,
    path: String,
    options: ReplayOptions,
    /// `Some` for a tail.
    tail: Option<TailFrom>,
    /// Chunks still to read, from the last `StatLog`.
    pending: VecDeque<ChunkStat>,
    current: Option<Cursor>,
    /// Index of the next chunk to look for.
    next_index: u32,
    events: VecDeque<ReplayEvent>,
    stats: ReplayStats,
    dedupe: Dedupe,
    /// Failing since (for giving up).
    failing_since: Option<Instant>,
    failures: u32,
    done: bool,
    /// The log's replication factor: a sealed chunk listed with fewer good replicas may have
    /// others (not reporting yet, cut off) that hold bytes its listed ones have bad.
    replication: u32,
    /// The chunks being read came from the client's cache of sealed chunks (the master could
    /// not be reached at the start): the log's later chunks are still to be asked for.
    listed_from_cache: bool,
}

impl Reader {
    async fn start(
        client: Client,
        path: &str,
        options: ReplayOptions,
        tail: Option<TailFrom>,
    ) -> Result<Reader> {
        let (stat, listed_from_cache) = match client.stat_log(path).await {
            Ok(stat) => (stat, false),
            // A tail from the end needs the log's true end, which only the master knows.
            Err(e) if e.is_master_away() && tail != Some(TailFrom::End) => {
                match client.cached_sealed(path) {
                    Some(stat) => {
                        warn!(log = %path, chunks = stat.chunks.len(), error = %e, "the master cannot be reached: reading the sealed chunks it listed before");
                        (stat, true)
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let replication = stat.replication;
        let mut pending: VecDeque<ChunkStat> = stat.chunks.into();
        let mut skip_to_end = false;
        if tail == Some(TailFrom::End) {
            // Start in the last chunk, at its readable end.
            while pending.len() > 1 {
                pending.pop_front();
            }
            skip_to_end = true;
        }
        let next_index = pending.front().map_or(0, |c| c.index);
        let mut reader = Reader {
            client,
            path: path.to_owned(),
            options,
            tail,
            pending,
            current: None,
            next_index,
            events: VecDeque::new(),
            stats: ReplayStats::default(),
            dedupe: Dedupe::default(),
            failing_since: None,
            failures: 0,
            done: false,
            replication,
            listed_from_cache,
        };
        if skip_to_end && let Some(c) = reader.pending.pop_front() {
            let mut cursor = Cursor::new(&c);
            let src = RpcSource {
                client: &reader.client,
                handle: cursor.handle,
                addrs: &cursor.sources,
            };
            let mut end = None;
            for r in 0..src.replicas() {
                // One byte at most: only the readable end is wanted (a `max_bytes` of 0 asks
                // the chunkserver for its default, which the check of the answer refused, so a
                // tail from the end started at the chunk's first record).
                if let Ok(f) = src.read(r, cursor.pos, 1, 0).await {
                    end = Some(f.readable_end);
                    break;
                }
            }
            cursor.pos = cursor.end.or(end).unwrap_or(cursor.pos).max(cursor.pos);
            reader.current = Some(cursor);
        }
        Ok(reader)
    }

    async fn next(&mut self) -> Option<Result<ReplayEvent>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Reads one range, or moves to the next chunk.
    async fn step(&mut self) -> Result<()> {
        let Some(cursor) = &mut self.current else {
            if let Some(c) = self.pending.pop_front() {
                self.next_index = c.index + 1;
                self.current = Some(Cursor::new(&c));
                return Ok(());
            }
            if self.listed_from_cache && self.tail.is_none() {
                return self.list_after_cached().await;
            }
            if self.tail.is_none() {
                self.done = true;
                return Ok(());
            }
            // A tail with nothing to read: look for the next chunk.
            return self.refresh().await.map(|found| {
                if !found {
                    debug!(log = %self.path, index = self.next_index, "waiting for the next chunk");
                }
            });
        };
        if let Some(end) = cursor.end
            && cursor.pos >= end
        {
            if cursor.lost_end > end {
                // A salvage cut the chunk back: say what is gone rather than end it quietly.
                let (index, len) = (cursor.index, cursor.lost_end - end);
                self.stats.skipped_ranges += 1;
                self.stats.skipped_bytes += len;
                self.events.push_back(ReplayEvent::Skipped {
                    chunk: index,
                    offset: end,
                    len,
                    reason: "lost with every replica that held these bytes (the master cut \
                             the chunk back to what surviving replicas held, or to its header \
                             when none survived; acknowledged records are among them only if \
                             every replica that held them was lost)"
                        .to_owned(),
                });
            }
            self.current = None;
            return Ok(());
        }
        if cursor.end.is_none() {
            // An open chunk is read from its primary first: only its end covers every
            // acknowledged record.
            cursor.preferred = 0;
        }
        let wait_ms = if self.tail.is_some() && self.pending.is_empty() {
            TAIL_WAIT_MS
        } else {
            0
        };
        let src = RpcSource {
            client: &self.client,
            handle: cursor.handle,
            addrs: &cursor.sources,
        };
        let read = read_range(&src, &mut cursor.preferred, cursor.pos, cursor.end, wait_ms).await;
        let read = match read {
            Ok(read) => read,
            Err(
                e @ Error::Rpc {
                    code: Code::NotFound,
                    ..
                },
            ) if cursor.end.is_none() && self.failures >= NOT_FOUND_READS_BEFORE_SEAL => {
                // An open chunk that no replica asked holds, again and again: its allocation was
                // logged but never created (the master died in between), or its primary was
                // wiped. The seal path asks every chunkserver and seals what they hold, or drops
                // the chunk if none holds any (another then takes its index). Not at the first
                // NOT_FOUND: a chunk is listed once its allocation is logged, a moment before its
                // replicas exist.
                debug!(log = %self.path, error = %e, "open chunk not found on its replicas");
                return self
                    .seal_current("its replicas answer that they do not hold it")
                    .await;
            }
            Err(e) => return self.read_failed(e).await,
        };
        let cursor = self.current.as_mut().expect("checked above");
        let (index, start) = (cursor.index, cursor.pos);
        // Open in the master's last answer: only the master's view of a sealed chunk (its good
        // replicas, its sealed length) lets bad bytes be reported as skipped.
        let open_for_master = cursor.end.is_none();
        if read.sealed && cursor.end.is_none() {
            cursor.end = Some(read.readable_end);
        }
        if read.next == start && cursor.end.is_some_and(|end| start < end) {
            // Every replica came back short of the sealed length.
            let e = Error::Unavailable {
                message: format!(
                    "no replica of chunk {} returns bytes at offset {start}",
                    cursor.handle
                ),
            };
            return self.read_failed(e).await;
        }
        if open_for_master
            && read
                .items
                .iter()
                .any(|i| matches!(i, RangeItem::Bad { .. }))
        {
            // Bad bytes below an open chunk's commit offset (or in a replica that was sealed a
            // moment ago, before the master finished the seal) that no other replica could
            // patch: the others hold them (every replica holds what is committed) but serve
            // only up to the commit offset they know, which lags the primary's. Have the master
            // seal the chunk, then read this range again up to the sealed length, from its good
            // replicas.
            cursor.end = None;
            return self
                .seal_current(&format!(
                    "bad bytes at offset {start} on every replica tried"
                ))
                .await;
        }
        let listed = cursor.sources.len();
        let unread = read.unread.clone().or_else(|| {
            (listed < self.replication as usize).then(|| {
                format!(
                    "the master lists {listed} of its {} replicas (the others may hold them \
                     whole)",
                    self.replication
                )
            })
        });
        if let Some(why) = unread
            && read
                .items
                .iter()
                .any(|i| matches!(i, RangeItem::Bad { .. }))
        {
            // Bad bytes are reported as skipped only once every replica has shown its copy of
            // them: one that could not be read (down, paused), or that the master does not list
            // yet (its chunkserver not registered again after a restart), may hold them whole.
            // A failed read, retried with the master's newer view; a replay gives up with an
            // error after `READ_RETRY_WINDOW`, never with a silently skipped acknowledged record.
            let e = Error::Unavailable {
                message: format!(
                    "bad bytes at offset {start} of chunk {}, and not every replica was read \
                     there: {why}",
                    cursor.handle
                ),
            };
            return self.read_failed(e).await;
        }
        self.failures = 0;
        self.failing_since = None;
        cursor.pos = read.next;
        let open_caught_up = cursor.end.is_none() && read.next >= read.readable_end;
        for item in read.items {
            self.emit(index, item);
        }
        if open_caught_up && !read.authoritative {
            // Read-after-ack: only the primary's end of an open chunk covers every acknowledged
            // record, and a secondary answered (the primary is down, cut off or restarted).
            // Never end the chunk here: have the master seal it, then read to the sealed length.
            return self
                .seal_current("only a secondary answered, whose end may lag")
                .await;
        }
        if open_caught_up {
            if self.tail.is_none() {
                // A replay reads an open chunk up to its commit offset at the time of the read.
                self.current = None;
            } else if read.next == start {
                // The long poll came back empty: has the chunk been sealed meanwhile (its
                // primary may not know, if it was cut off)?
                self.refresh_current().await?;
            }
        }
        Ok(())
    }

    /// Turns a range item into an event (or a count).
    fn emit(&mut self, chunk: u32, item: RangeItem) {
        match item {
            RangeItem::Record {
                offset,
                id,
                payload,
            } => {
                if !self.options.keep_duplicates && !self.dedupe.first_copy(id) {
                    self.stats.duplicates_dropped += 1;
                    return;
                }
                self.stats.records += 1;
                self.stats.payload_bytes += payload.len() as u64;
                self.events.push_back(ReplayEvent::Record {
                    id,
                    chunk,
                    offset,
                    payload,
                });
            }
            RangeItem::Padding { len, .. } => self.stats.padding_bytes += len,
            RangeItem::Bad { offset, len, tried } => {
                self.stats.skipped_ranges += 1;
                self.stats.skipped_bytes += len;
                self.events.push_back(ReplayEvent::Skipped {
                    chunk,
                    offset,
                    len,
                    reason: format!("bad bytes on every replica tried ({tried})"),
                });
            }
        }
    }

    /// A read failed on every replica: wait, ask the master for a newer view, try again; give
    /// up (replay) after [`READ_RETRY_WINDOW`].
    async fn read_failed(&mut self, e: Error) -> Result<()> {
        self.failures += 1;
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if self.tail.is_none() && since.elapsed() >= READ_RETRY_WINDOW {
            return Err(e);
        }
        let chunk = self.current.as_ref().map(|c| c.handle.to_string());
        debug!(log = %self.path, chunk, error = %e, attempt = self.failures, "read failed; retrying");
        tokio::time::sleep(backoff(self.failures)).await;
        match self.refresh_current().await {
            Err(e @ Error::LogNotFound { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    /// Asks the master to seal the open chunk being read (its primary cannot serve it: `why`), then
    /// takes the master's new view of it. A failed seal counts as a failed read: retried with
    /// backoff, and a replay gives up after [`READ_RETRY_WINDOW`] with an error, never with a
    /// silently short chunk.
    async fn seal_current(&mut self, why: &str) -> Result<()> {
        let Some(cursor) = &self.current else {
            return Ok(());
        };
        let (handle, version) = (cursor.handle, cursor.version);
        debug!(log = %self.path, chunk = %handle, %version, why, "asking the master to seal the open chunk being read");
        let sealed = self
            .client
            .seal(
                &self.path,
                handle,
                version,
                v1::SealReason::PrimaryUnreachable,
                format!("a reader could not read the open chunk from its primary: {why}"),
            )
            .await;
        match sealed {
            Ok(_) => {
                self.refresh_current().await?;
                if self.current.as_ref().is_some_and(|c| c.end.is_none()) {
                    // Still open in the master's view (e.g. the seal raced a newer version):
                    // back off before reading again.
                    let e = Error::Unavailable {
                        message: format!("chunk {handle} is still open after a seal request"),
                    };
                    return self.read_failed(e).await;
                }
                self.failures = 0;
                self.failing_since = None;
                Ok(())
            }
            Err(status) => {
                let e = Error::Unavailable {
                    message: format!(
                        "the primary of open chunk {handle} cannot be read and the master could \
                         not seal it: {}",
                        status.message()
                    ),
                };
                self.read_failed(e).await
            }
        }
    }

    /// Re-reads the current chunk's state from the master (sealed? which replicas?).
    async fn refresh_current(&mut self) -> Result<()> {
        let stat = match self.client.stat_log(&self.path).await {
            Ok(stat) => stat,
            Err(e @ Error::LogNotFound { .. }) => return Err(e),
            Err(_) => return Ok(()),
        };
        let Some(cursor) = &mut self.current else {
            return Ok(());
        };
        if let Some(c) = stat.chunks.iter().find(|c| c.index == cursor.index) {
            if c.handle == cursor.handle {
                cursor.update(c);
            } else {
                // The chunk this cursor was made for was abandoned (the master drops an open
                // chunk only when it provably holds nothing: its allocation failed) and another
                // took its index. Read that one, from its start. Without this, a reader that
                // saw the doomed chunk in a listing kept asking for it, and a tail hung there.
                debug!(log = %self.path, index = cursor.index, old = %cursor.handle, new = %c.handle, "chunk replaced at its index; reading the new one");
                *cursor = Cursor::new(c);
            }
        }
        if self.tail.is_some() {
            self.pending = stat
                .chunks
                .into_iter()
                .filter(|c| c.index > cursor.index)
                .collect();
            if let Some(c) = self.pending.back() {
                self.next_index = c.index + 1;
            }
        }
        Ok(())
    }

    /// A replay that read every chunk of the cache asks the master for the chunks after them;
    /// while it cannot be reached, it retries as a failed read does ([`Reader::read_failed`]:
    /// backoff, an error after [`READ_RETRY_WINDOW`]), never ending as if the log ended there.
    async fn list_after_cached(&mut self) -> Result<()> {
        match self.client.stat_log(&self.path).await {
            Ok(stat) => {
                self.listed_from_cache = false;
                self.replication = stat.replication;
                self.pending = stat
                    .chunks
                    .into_iter()
                    .filter(|c| c.index >= self.next_index)
                    .collect();
                self.failures = 0;
                self.failing_since = None;
                Ok(())
            }
            Err(e @ Error::LogNotFound { .. }) => Err(e),
            Err(e) => {
                // Retried as a failed read is: with backoff, and given up after the window.
                let e = Error::Unavailable {
                    message: format!(
                        "read the {} sealed chunks of {} the master listed before it became \
                         unreachable; whether more follow is unknown until it answers: {e}",
                        self.next_index, self.path
                    ),
                };
                self.read_failed(e).await
            }
        }
    }

    /// Tail: asks the master for chunks from `next_index` on; sleeps a little when none.
    async fn refresh(&mut self) -> Result<bool> {
        match self.client.stat_log(&self.path).await {
            Ok(stat) => {
                self.pending = stat
                    .chunks
                    .into_iter()
                    .filter(|c| c.index >= self.next_index)
                    .collect();
            }
            Err(e @ Error::LogNotFound { .. }) => return Err(e),
            Err(e) => debug!(log = %self.path, error = %e, "stat failed"),
        }
        if self.pending.is_empty() {
            tokio::time::sleep(TAIL_POLL_INTERVAL).await;
            return Ok(false);
        }
        Ok(true)
    }
}

/// The replicas of one chunk, read with `Read` RPCs.
struct RpcSource<'a> {
    client: &'a Client,
    handle: ChunkHandle,
    addrs: &'a [String],
}

impl Source for RpcSource<'_> {
    fn replicas(&self) -> usize {
        self.addrs.len()
    }

    async fn read(
        &self,
        replica: usize,
        offset: ChunkOffset,
        max_bytes: u64,
        wait_ms: u32,
    ) -> Result<Fetched> {
        let addr = &self.addrs[replica];
        let mut cs = self.client.chunkserver(addr)?;
        let req = v1::ReadRequest {
            handle: self.handle.0,
            offset: offset.into(),
            max_bytes: max_bytes.min(u32::MAX as u64) as u32,
            wait_ms,
        };
        let timeout = READ_TIMEOUT + Duration::from_millis(wait_ms as u64);
        let resp = cs
            .read(request(req, timeout))
            .await
            .map_err(|s| Error::from_chunkserver(s, addr))?
            .into_inner();
        if ChunkOffset(resp.offset) != offset || resp.data.len() as u64 > max_bytes {
            return Err(Error::Protocol {
                message: format!(
                    "{addr} answered {} bytes at {} for a read of {max_bytes} at {offset}",
                    resp.data.len(),
                    resp.offset
                ),
            });
        }
        Ok(Fetched {
            data: resp.data,
            readable_end: ChunkOffset(resp.readable_end),
            sealed: resp.sealed,
            primary: resp.primary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(writer: u64, sequence: u64) -> RecordId {
        RecordId {
            writer: WriterId(writer),
            sequence,
        }
    }

    // Proves: per-writer dedupe keeps first copies, drops a resent run (same or lower
    // sequences after a higher one), and keeps writers apart.
    #[test]
    fn dedupe_keeps_first_copies_per_writer() {
        let mut d = Dedupe::default();
        let log = [
            id(1, 1),
            id(1, 2),
            id(2, 1),
            id(1, 3),
            // A batch resent after a failed ack: 2 and 3 again, then new records.
            id(1, 2),
            id(1, 3),
            id(1, 4),
            id(2, 1),
            id(2, 2),
        ];
        let kept: Vec<bool> = log.iter().map(|&i| d.first_copy(i)).collect();
        assert_eq!(
            kept,
            vec![true, true, true, true, false, false, true, false, true]
        );
    }
}
