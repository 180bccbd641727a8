//! [`Client`]: channels to the master and chunkservers, and the log namespace calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::net::{Connector, Link, TcpConnector};
use cairn_proto::v1::{self, chunkserver_client::ChunkserverClient, master_client::MasterClient};
use cairn_record::limits::{CHUNK_BYTES_DEFAULT, check_chunk_bytes};
use cairn_record::{ChunkHandle, ChunkOffset, ChunkVersion, SplitMix64, WriterId};
use tonic::transport::Endpoint;

use crate::error::{Error, Result};
use crate::limits::{
    CONNECT_TIMEOUT, LEADER_SEARCH, LEADER_SEARCH_PAUSE, MASTER_CALL_TIMEOUT, STAT_LOG_PAGE_CHUNKS,
};

/// Options of a new log: [`LogOptions::default`] and the `with_…` methods (more options may be
/// added, so the struct cannot be written out field by field outside this crate).
///
/// ```
/// let options = cairn_client::LogOptions::default()
///     .with_replication(3)
///     .with_chunk_bytes(1 << 20);
/// assert_eq!(options.chunk_bytes, 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Replicas per chunk. Default 3; 0 asks for the master's default.
    pub replication: u32,
    /// Fewest replicas a new chunk opens on, 1..=replication; 0 (default) means the replication
    /// factor. A chunk opens on as many live chunkservers as it can up to the factor, at least
    /// this many, and is copied to the full factor once sealed.
    pub min_replicas: u32,
    /// Chunk capacity in bytes, header included. Default 64 MiB; a multiple of 8 within
    /// `cairn_record::limits::{CHUNK_BYTES_MIN, CHUNK_BYTES_MAX}`.
    pub chunk_bytes: u64,
    /// The chunkserver (its advertised address) every chunk of the log is placed on, as its
    /// primary; `None` (default): anywhere. It must be live when the log is created, and while
    /// it is not, the log's next chunk is not allocated (appends fail `Unavailable` until it is
    /// back) rather than placed elsewhere. With replication 1 it holds the only copy.
    pub place_on: Option<String>,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            replication: 3,
            min_replicas: 0,
            chunk_bytes: CHUNK_BYTES_DEFAULT,
            place_on: None,
        }
    }
}

impl LogOptions {
    /// With [`LogOptions::replication`] replicas per chunk (0: the master's default).
    #[must_use]
    pub fn with_replication(mut self, replication: u32) -> LogOptions {
        self.replication = replication;
        self
    }

    /// With a new chunk opening on at least [`LogOptions::min_replicas`] chunkservers (0: the
    /// replication factor).
    #[must_use]
    pub fn with_min_replicas(mut self, min_replicas: u32) -> LogOptions {
        self.min_replicas = min_replicas;
        self
    }

    /// With chunks of [`LogOptions::chunk_bytes`] bytes, header included.
    #[must_use]
    pub fn with_chunk_bytes(mut self, chunk_bytes: u64) -> LogOptions {
        self.chunk_bytes = chunk_bytes;
        self
    }

    /// With every chunk placed on the chunkserver advertised as `chunkserver`
    /// ([`LogOptions::place_on`]).
    #[must_use]
    pub fn with_place_on(mut self, chunkserver: impl Into<String>) -> LogOptions {
        self.place_on = Some(chunkserver.into());
        self
    }
}

/// A log as `list_logs` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogInfo {
    /// The log's path.
    pub path: String,
    /// Replicas per chunk.
    pub replication: u32,
    /// Fewest replicas a new chunk opens on (0 from a master that predates it).
    pub min_replicas: u32,
    /// Chunk capacity in bytes, header included.
    pub chunk_bytes: u64,
    /// Number of chunks.
    pub chunk_count: u32,
    /// The chunkserver every chunk is placed on ([`LogOptions::place_on`]), if any.
    pub place_on: Option<String>,
}

/// Whether a chunk still takes appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkState {
    /// Taking appends through its fixed primary.
    Open,
    /// Immutable; its length is final.
    Sealed,
}

impl ChunkState {
    /// `open` or `sealed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkState::Open => "open",
            ChunkState::Sealed => "sealed",
        }
    }
}

/// One chunk of a log, as the master knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkStat {
    /// Position in the log, from 0.
    pub index: u32,
    /// The chunk's handle (also its replica file name).
    pub handle: ChunkHandle,
    /// Open or sealed.
    pub state: ChunkState,
    /// Sealed: the sealed length. Open: the largest durable length a replica reported (may lag).
    /// File bytes, header included.
    pub length: ChunkOffset,
    /// The chunk's version (raised by each fence).
    pub version: ChunkVersion,
    /// Addresses of the chunkservers holding a current replica.
    pub replicas: Vec<String>,
    /// Open chunks: the fixed primary's address.
    pub primary: Option<String>,
    /// Sealed chunks: [`ChunkOffset::ZERO`], or the end of a lost tail. The master cut the chunk back to `length`
    /// after every replica holding bytes past it was lost (a salvage); bytes
    /// `[length, lost_end)` are gone and replay reports them as [`crate::ReplayEvent::Skipped`].
    pub lost_end: ChunkOffset,
}

/// A log's options and chunks, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStat {
    /// The log's path.
    pub path: String,
    /// Replicas per chunk.
    pub replication: u32,
    /// Fewest replicas a new chunk opens on (0 from a master that predates it).
    pub min_replicas: u32,
    /// Chunk capacity in bytes, header included.
    pub chunk_bytes: u64,
    /// The chunks in order.
    pub chunks: Vec<ChunkStat>,
}

/// One `StatLog` page.
struct StatPage {
    /// The log's chunk count when the page was taken.
    total_chunks: u32,
    /// The log's options and this page's chunks.
    log: LogStat,
}

/// Where to append now: a log's open chunk (`OpenChunk` / `SealChunk` answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) index: u32,
    pub(crate) handle: ChunkHandle,
    pub(crate) version: ChunkVersion,
    pub(crate) primary: String,
}

impl From<v1::ChunkLocation> for Location {
    fn from(l: v1::ChunkLocation) -> Location {
        Location {
            index: l.index,
            handle: ChunkHandle(l.handle),
            version: ChunkVersion(l.version),
            primary: l.primary,
        }
    }
}

fn log_info(l: v1::LogInfo) -> LogInfo {
    LogInfo {
        path: l.path,
        replication: l.replication,
        min_replicas: l.min_replicas,
        chunk_bytes: l.chunk_bytes,
        chunk_count: l.chunk_count,
        place_on: (!l.place_on.is_empty()).then_some(l.place_on),
    }
}

fn chunk_stat(c: v1::ChunkInfo) -> ChunkStat {
    let state = if c.state == v1::ChunkState::Sealed as i32 {
        ChunkState::Sealed
    } else {
        ChunkState::Open
    };
    ChunkStat {
        index: c.index,
        handle: ChunkHandle(c.handle),
        state,
        length: ChunkOffset(c.length),
        version: ChunkVersion(c.version),
        replicas: c.replicas,
        primary: (!c.primary.is_empty()).then_some(c.primary),
        lost_end: ChunkOffset(c.lost_end),
    }
}

/// A connection to a Cairn cluster: one channel to the master and a cache of lazily connected
/// channels to chunkservers, by address, each a [`Link`] (a call that timed out or broke in the
/// channel makes the next call dial a new connection, so a half-open one holds no more than one
/// call's deadline). Cheap to clone; clones share the channels.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    master_addr: String,
    /// Makes every channel: the OS's TCP, or a test's or simulator's network.
    connector: Arc<dyn Connector>,
    master: MasterClient<Link>,
    chunkservers: Mutex<HashMap<String, ChunkserverClient<Link>>>,
    /// Where new appenders' writer ids come from: the OS's randomness, or a seed.
    writer_ids: Mutex<Option<SplitMix64>>,
    /// The sealed chunks of the logs the master last listed, for replays while it is away.
    sealed: crate::sealed_cache::SealedCache,
    /// How many masters the client was given.
    masters: u32,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("master_addr", &self.master_addr)
            .finish_non_exhaustive()
    }
}

/// The endpoint of `addr` with Cairn's channel settings (`cairn_proto::net::endpoint`) and the
/// client's connect timeout. Per-call deadlines are set on each request, so long polls are not
/// cut short.
fn endpoint(addr: &str) -> Result<Endpoint> {
    cairn_proto::net::endpoint(addr, CONNECT_TIMEOUT).map_err(|e| Error::InvalidArgument {
        message: e.to_string(),
    })
}

/// A request with a deadline.
pub(crate) fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

impl Client {
    /// Connects to the master at `master` (`HOST:PORT` or a URI), or to the first of a
    /// comma-separated list of masters that answers (`m1:7000,m2:7000,m3:7000`: a call that
    /// fails in the connection moves the client to the next one). Fails with
    /// [`Error::MasterUnreachable`] if none can be reached now; later calls reconnect by
    /// themselves.
    pub async fn connect(master: &str) -> Result<Client> {
        Client::with_connector(master, TcpConnector::shared()).await
    }

    /// [`Client::connect`] making every channel (to the master and to chunkservers) through
    /// `connector`: a test's or a simulator's network instead of the OS's TCP.
    ///
    /// An advanced seam, and the one place the client's API shows the gRPC stack it is built
    /// on: a [`Connector`] (from the `cairn-proto` crate) makes tonic channels from tonic
    /// endpoints, so implementing one ties the caller to the tonic version this crate uses.
    /// Applications use [`Client::connect`].
    pub async fn with_connector(master: &str, connector: Arc<dyn Connector>) -> Result<Client> {
        let endpoints = cairn_proto::net::endpoints(master, CONNECT_TIMEOUT).map_err(|e| {
            Error::InvalidArgument {
                message: e.to_string(),
            }
        })?;
        let mut failures = Vec::new();
        let mut connected = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match connector.connect(ep.clone()).await {
                Ok(channel) => {
                    connected = Some((i, channel));
                    break;
                }
                Err(e) if endpoints.len() == 1 => failures.push(error_chain(&e)),
                Err(e) => failures.push(format!("{}: {}", ep.uri(), error_chain(&e))),
            }
        }
        let (first, channel) = connected.ok_or_else(|| Error::MasterUnreachable {
            addr: master.to_owned(),
            message: failures.join("; "),
        })?;
        let masters = endpoints.len() as u32;
        let link = Link::among(connector.clone(), endpoints, first, channel);
        let master_client = MasterClient::new(link)
            .max_decoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX);
        Ok(Client {
            inner: Arc::new(Inner {
                master_addr: master.to_owned(),
                connector,
                writer_ids: Mutex::new(None),
                master: master_client,
                chunkservers: Mutex::new(HashMap::new()),
                sealed: Default::default(),
                masters,
            }),
        })
    }

    /// Draws the writer ids of appenders opened from now on (by this client and its clones)
    /// from `seed` instead of the OS's randomness, so a simulation replays the same ids. Ids are
    /// then only as unique as the seeds: two clients must not share one.
    pub fn seed_writer_ids(&self, seed: u64) {
        *self
            .inner
            .writer_ids
            .lock()
            .expect("writer id lock is never held across a panic") = Some(SplitMix64::new(seed));
    }

    /// A new non-zero writer id (see [`Client::seed_writer_ids`]).
    pub(crate) fn new_writer_id(&self) -> WriterId {
        let mut seeded = self
            .inner
            .writer_ids
            .lock()
            .expect("writer id lock is never held across a panic");
        loop {
            let id = match seeded.as_mut() {
                Some(rng) => rng.next_u64(),
                None => rand::random(),
            };
            if id != 0 {
                return WriterId(id);
            }
        }
    }

    /// The master address this client was connected with.
    pub fn master_addr(&self) -> &str {
        &self.inner.master_addr
    }

    pub(crate) fn master(&self) -> MasterClient<Link> {
        self.inner.master.clone()
    }

    /// A client for the chunkserver at `addr`, from the cache (connected lazily on first use).
    pub(crate) fn chunkserver(&self, addr: &str) -> Result<ChunkserverClient<Link>> {
        let mut cache = self
            .inner
            .chunkservers
            .lock()
            .expect("chunkserver cache lock is never held across a panic");
        if let Some(c) = cache.get(addr) {
            return Ok(c.clone());
        }
        let link = Link::lazy(self.inner.connector.clone(), endpoint(addr)?);
        let c = ChunkserverClient::new(link)
            .max_decoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(cairn_proto::GRPC_MESSAGE_BYTES_MAX);
        cache.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Calls the master with `call`, and again while the master reached answers that it does
    /// not lead its group, or (given several) refuses the connection: either way it did
    /// nothing, and the link has moved on to the next master. A group of masters serves every
    /// call through its leader. Gives up with the last answer after [`LEADER_SEARCH`] (an
    /// election takes about a second).
    pub(crate) async fn on_master<T, F, Fut>(
        &self,
        mut call: F,
    ) -> std::result::Result<tonic::Response<T>, tonic::Status>
    where
        F: FnMut(MasterClient<Link>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = tokio::time::Instant::now();
        let mut refusals = 0u32;
        loop {
            match call(self.master()).await {
                Err(status)
                    if (cairn_proto::net::not_leader(&status)
                        || (self.inner.masters > 1
                            && cairn_proto::net::connection_refused(&status)))
                        && started.elapsed() < LEADER_SEARCH =>
                {
                    refusals += 1;
                    // Every master asked once: an election is under way; wait a little.
                    if refusals.is_multiple_of(self.inner.masters) {
                        tokio::time::sleep(LEADER_SEARCH_PAUSE).await;
                    }
                }
                result => return result,
            }
        }
    }

    pub(crate) fn master_error(&self, status: tonic::Status, path: &str) -> Error {
        Error::from_master(status, path, &self.inner.master_addr)
    }

    /// Creates a log. [`Error::LogExists`] if the path is taken.
    pub async fn create_log(&self, path: &str, options: LogOptions) -> Result<LogInfo> {
        check_chunk_bytes(options.chunk_bytes).map_err(|e| Error::InvalidArgument {
            message: e.to_string(),
        })?;
        let req = v1::CreateLogRequest {
            path: path.to_owned(),
            replication: options.replication,
            min_replicas: options.min_replicas,
            chunk_bytes: options.chunk_bytes,
            place_on: options.place_on.unwrap_or_default(),
        };
        let info = self
            .on_master(|mut master| {
                let req = req.clone();
                async move { master.create_log(request(req, MASTER_CALL_TIMEOUT)).await }
            })
            .await
            .map_err(|s| self.master_error(s, path))?
            .into_inner();
        Ok(log_info(info))
    }

    /// Deletes a log and (through heartbeats) its replicas. [`Error::LogNotFound`] if absent.
    pub async fn delete_log(&self, path: &str) -> Result<()> {
        let req = v1::DeleteLogRequest {
            path: path.to_owned(),
        };
        self.on_master(|mut master| {
            let req = req.clone();
            async move { master.delete_log(request(req, MASTER_CALL_TIMEOUT)).await }
        })
        .await
        .map_err(|s| self.master_error(s, path))?;
        Ok(())
    }

    /// Logs whose path starts with `prefix` (all logs for `""`).
    pub async fn list_logs(&self, prefix: &str) -> Result<Vec<LogInfo>> {
        let req = v1::ListLogsRequest {
            prefix: prefix.to_owned(),
        };
        let resp = self
            .on_master(|mut master| {
                let req = req.clone();
                async move { master.list_logs(request(req, MASTER_CALL_TIMEOUT)).await }
            })
            .await
            .map_err(|s| self.master_error(s, prefix))?
            .into_inner();
        Ok(resp.logs.into_iter().map(log_info).collect())
    }

    /// A log's options and chunks. [`Error::LogNotFound`] if absent.
    ///
    /// Asks the master page by page (at most [`STAT_LOG_PAGE_CHUNKS`] chunks each), so a log of
    /// any length can be listed; a master that predates paging answers the whole log at once.
    pub async fn stat_log(&self, path: &str) -> Result<LogStat> {
        let log = self.stat_log_uncached(path).await;
        match &log {
            Ok(log) => self.inner.sealed.remember(log),
            Err(Error::LogNotFound { .. }) => self.inner.sealed.forget(path),
            Err(_) => {}
        }
        log
    }

    /// The sealed chunks of `path` as the master last listed them to this client (with the
    /// log's options), for a replay while the master cannot be reached.
    pub(crate) fn cached_sealed(&self, path: &str) -> Option<LogStat> {
        self.inner.sealed.get(path)
    }

    async fn stat_log_uncached(&self, path: &str) -> Result<LogStat> {
        let first = self.stat_log_page(path, 0, STAT_LOG_PAGE_CHUNKS).await?;
        let mut total = first.total_chunks;
        let mut log = first.log;
        while let Some(last) = log.chunks.last() {
            let next = last.index.saturating_add(1);
            if next >= total {
                break;
            }
            let page = self.stat_log_page(path, next, STAT_LOG_PAGE_CHUNKS).await?;
            // The log may have grown (or its open chunk been dropped) between pages: the last
            // page's count is the current one.
            total = page.total_chunks;
            let before = log.chunks.len();
            log.chunks
                .extend(page.log.chunks.into_iter().filter(|c| c.index >= next));
            if log.chunks.len() == before {
                break;
            }
        }
        Ok(log)
    }

    /// A log's options and its first chunk at most, without listing the rest (what an
    /// appender needs to know).
    pub(crate) async fn log_options(&self, path: &str) -> Result<LogStat> {
        Ok(self.stat_log_page(path, 0, 1).await?.log)
    }

    /// One `StatLog` page: the chunks from index `first`, at most `max` (the master may cap it).
    async fn stat_log_page(&self, path: &str, first: u32, max: u32) -> Result<StatPage> {
        let req = v1::StatLogRequest {
            path: path.to_owned(),
            first_index: first,
            max_chunks: Some(max),
        };
        let info = self
            .on_master(|mut master| {
                let req = req.clone();
                async move { master.stat_log(request(req, MASTER_CALL_TIMEOUT)).await }
            })
            .await
            .map_err(|s| self.master_error(s, path))?
            .into_inner();
        let mut chunks: Vec<ChunkStat> = info.chunks.into_iter().map(chunk_stat).collect();
        chunks.sort_by_key(|c| c.index);
        Ok(StatPage {
            total_chunks: info.chunk_count,
            log: LogStat {
                path: info.path,
                replication: info.replication,
                min_replicas: info.min_replicas,
                chunk_bytes: info.chunk_bytes,
                chunks,
            },
        })
    }

    /// The log's open chunk (allocated by the master if there is none).
    pub(crate) async fn open_chunk(&self, path: &str) -> Result<Location, tonic::Status> {
        let req = v1::OpenChunkRequest {
            path: path.to_owned(),
        };
        let loc = self
            .on_master(|mut master| {
                let req = req.clone();
                async move { master.open_chunk(request(req, MASTER_CALL_TIMEOUT)).await }
            })
            .await?
            .into_inner();
        Ok(loc.into())
    }

    /// Seals `at` (idempotent) and returns the log's next open chunk.
    pub(crate) async fn seal_chunk(
        &self,
        path: &str,
        at: &Location,
        reason: v1::SealReason,
        detail: String,
    ) -> Result<Location, tonic::Status> {
        self.seal(path, at.handle, at.version, reason, detail).await
    }

    /// Seals chunk `handle` of `path` at `version` (idempotent: a chunk already sealed, or an
    /// older version, just gets the current open chunk back) and returns the next open chunk.
    pub(crate) async fn seal(
        &self,
        path: &str,
        handle: ChunkHandle,
        version: ChunkVersion,
        reason: v1::SealReason,
        detail: String,
    ) -> Result<Location, tonic::Status> {
        let req = v1::SealChunkRequest {
            path: path.to_owned(),
            handle: handle.0,
            version: version.into(),
            reason: reason as i32,
            detail,
        };
        let loc = self
            .on_master(|mut master| {
                let req = req.clone();
                async move { master.seal_chunk(request(req, MASTER_CALL_TIMEOUT)).await }
            })
            .await?
            .into_inner();
        Ok(loc.into())
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    message
}
