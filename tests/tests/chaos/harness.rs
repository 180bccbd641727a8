//! The chaos harness: a real cluster (1 master + 4 chunkservers, short
//! timings, small chunks, optionally proxied and in power-cut mode), writers in this process
//! that record every attempt in a JSONL history, a fault schedule printed as it happens, and a
//! final phase that heals everything, waits for full replication, replays and checks.
//!
//! Readers check read-after-ack (invariant R): every [`Chaos::fault`] starts a library replay at
//! once, the first one also a tail, and scenarios may start more ([`Chaos::spawn_replay`],
//! [`Chaos::spawn_tail`]); each records when it began and what it returned, so the checker can
//! hold it to every acknowledgement recorded before it began. Replays run while the fault is
//! still in force (they must return everything or fail with an error, never end short); tails
//! are given until after healing to catch up with every acknowledged record (invariant T), then
//! stopped. Whatever a reader returned must still be in the final replays (invariant G).
//!
//! Faults on the open chunk are confirmed to land: [`Chaos::freeze_on_open_chunk`] holds the
//! writers (nothing in flight, so the chunk cannot roll) while the scenario picks and faults the
//! chunk, and [`Chaos::assert_sealed`] checks the master's log for that chunk's seal, its reason
//! and the replicas it was sealed on. `finish` asserts every server it did not stop is running.
//!
//! Writers use the client library directly: eight *sequential* writers (each waits for its
//! record's acknowledgement before the next; after an indeterminate outcome it retries the same
//! sequence as a new attempt through a new appender) and one *pipelined* writer (up to 16 records
//! in flight on one appender). Payloads are [`Payload`]s, so the checker can tell every record's
//! writer, sequence and attempt, and its integrity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{
    ChunkState, Client, Error as ClientError, LogOptions, ReplayEvent, ReplayOptions, TailFrom,
};
use cairn_record::{ScanItem, Scanner};
use cairn_tests::check::{Input, Names, ReaderEnd, ReaderRun, ReplicaScan, check};
use cairn_tests::history::Op;
use cairn_tests::{
    Cluster, ClusterOpts, Event, History, LogStat, Payload, Record, Role, WriterId, wait_until,
    workload,
};
use tokio::task::JoinHandle;

/// The test writer of the probe append after healing.
const PROBE_WRITER: u32 = u32::MAX;
/// Chunk capacity of chaos logs: small, so rolls and padding happen all the time.
pub(crate) const CHUNK_BYTES: u64 = 256 << 10;
/// Sequential writers.
pub(crate) const SEQUENTIAL_WRITERS: u32 = 8;
/// Records the pipelined writer keeps in flight.
pub(crate) const PIPELINE_DEPTH: usize = 16;
/// How long one attempt may take before the writer calls it indeterminate and retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(40);
/// A replay started during the run must end (complete or with an error) this long after it
/// began; the client gives up on an unreadable chunk after 30 s without progress.
const REPLAY_BOUND: Duration = Duration::from_secs(120);
/// After healing, a tail gets this long to return every acknowledged record.
const TAIL_CATCH_UP: Duration = Duration::from_secs(30);

/// Options of a scenario's cluster.
#[derive(Clone, Debug)]
pub(crate) struct ChaosOpts {
    /// Chunkservers (4: one can die and RF 3 still holds).
    pub(crate) chunkservers: usize,
    /// Put a proxy in front of every server.
    pub(crate) proxied: bool,
    /// Chunkservers keep unsynced writes in memory (`--test-power-cut`).
    pub(crate) power_cut: bool,
    /// Sequential writers to run (the pipelined one runs too unless this is 0).
    pub(crate) writers: u32,
    /// Payload body sizes, bytes.
    pub(crate) body: (usize, usize),
    /// The master's `--dead-after-ms` (1 s: fast failure detection).
    pub(crate) dead_after_ms: u64,
    /// Chunkservers scrub every 500 ms (else only the pass at startup).
    pub(crate) scrub: bool,
}

impl Default for ChaosOpts {
    fn default() -> Self {
        ChaosOpts {
            chunkservers: 4,
            proxied: false,
            power_cut: false,
            writers: SEQUENTIAL_WRITERS,
            body: (64, 2048),
            dead_after_ms: 1000,
            scrub: true,
        }
    }
}

/// A running scenario.
pub(crate) struct Chaos {
    /// The cluster under test.
    pub(crate) cluster: Cluster,
    /// The scenario's log.
    pub(crate) log: String,
    name: String,
    seed: u64,
    started: Instant,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    /// Writers start no new attempt while set ([`Chaos::freeze`]).
    frozen: Arc<AtomicBool>,
    /// Attempts invoked and without an outcome yet.
    in_flight: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    /// The scenario may lose every complete replica of a sealed chunk, so the master may
    /// salvage it and replay report its lost (never acknowledged) tail as skipped.
    salvage_expected: bool,
    rt: tokio::runtime::Runtime,
    writers: Vec<JoinHandle<()>>,
    schedule: Vec<String>,
    readers: Vec<Reader>,
}

/// A replay or tail running during the scenario, for invariant R.
struct Reader {
    name: String,
    started_ms: u64,
    started: Instant,
    tail: bool,
    events: Arc<Mutex<Vec<Event>>>,
    end: Arc<Mutex<Option<ReaderEnd>>>,
    task: JoinHandle<()>,
}

impl Chaos {
    /// Starts the cluster, creates the log and starts the writers.
    pub(crate) fn start(name: &str, opts: ChaosOpts) -> Chaos {
        let seed = workload::seed(name);
        let mut cluster_opts = ClusterOpts::fast_failure_detection();
        cluster_opts.master_args = [
            "--heartbeat-ms".to_owned(),
            "200".to_owned(),
            "--dead-after-ms".to_owned(),
            opts.dead_after_ms.to_string(),
            // Sealers gone this long count as lost for a salvage (15 min by default): scenarios
            // that wipe a chunk's only complete replica see the salvage within seconds.
            "--salvage-after-ms".to_owned(),
            (opts.dead_after_ms * 3).max(3000).to_string(),
            "--rpc-timeout-ms".to_owned(),
            "2000".to_owned(),
        ]
        .to_vec();
        cluster_opts.chunkserver_args = ["--rpc-timeout-ms", "2000"].map(String::from).to_vec();
        if opts.scrub {
            cluster_opts.chunkserver_args.extend(
                [
                    "--scrub-interval-ms",
                    "500",
                    "--scrub-bytes-per-sec",
                    "268435456",
                ]
                .map(String::from),
            );
        }
        cluster_opts.proxied = opts.proxied;
        if opts.power_cut {
            cluster_opts
                .chunkserver_env
                .push(("CAIRN_TEST_POWER_CUT".into(), "1".into()));
        }
        let cluster = Cluster::start(opts.chunkservers, cluster_opts);
        if opts.power_cut {
            assert_power_cut_mode(&cluster);
        }
        let log = format!("/chaos/{name}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let master = cluster.master_addr();
        rt.block_on(async {
            let client = Client::connect(&master).await.expect("connect");
            client
                .create_log(
                    &log,
                    LogOptions::default()
                        .with_replication(3)
                        .with_chunk_bytes(CHUNK_BYTES),
                )
                .await
                .expect("create the log");
        });
        let history_path: PathBuf = cluster.dir().join("history.jsonl");
        let history = Arc::new(History::create(&history_path).expect("history file"));
        let mut chaos = Chaos {
            cluster,
            log,
            name: name.to_owned(),
            seed,
            started: Instant::now(),
            history,
            stop: Arc::new(AtomicBool::new(false)),
            frozen: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicU64::new(0)),
            acked: Arc::new(AtomicU64::new(0)),
            salvage_expected: false,
            rt,
            writers: Vec::new(),
            schedule: Vec::new(),
            readers: Vec::new(),
        };
        eprintln!(
            "chaos {name}: seed {seed} (rerun with CAIRN_TESTS_SEED={seed}); history {}",
            history_path.display()
        );
        for w in 1..=opts.writers {
            chaos.spawn_sequential(w, opts.body);
        }
        if opts.writers > 0 {
            chaos.spawn_pipelined(opts.writers + 1, opts.body);
        }
        chaos
    }

    /// Records a fault in the schedule (and prints it), and starts a replay at once (the first
    /// fault also a tail) to check read-after-ack while the fault is in force.
    pub(crate) fn fault(&mut self, what: impl Into<String>) {
        self.note(what);
        let n = self.schedule.len();
        if self.readers.iter().all(|r| !r.tail) {
            self.spawn_tail(&format!("tail from schedule line {n}"));
        }
        self.spawn_replay(&format!("replay at schedule line {n}"));
    }

    /// Records an event in the schedule (and prints it), starting no reader.
    fn note(&mut self, what: impl Into<String>) {
        let line = format!(
            "{:>7.2} s  {}",
            self.started.elapsed().as_secs_f64(),
            what.into()
        );
        eprintln!("chaos {}: {line}", self.name);
        self.schedule.push(line);
    }

    /// Starts a library replay of the log now, for invariant R.
    pub(crate) fn spawn_replay(&mut self, name: &str) {
        self.spawn_reader(name, false);
    }

    /// Starts a library tail of the log (from its start) now, for invariant R; it runs until
    /// [`Chaos::finish`] has let it catch up.
    pub(crate) fn spawn_tail(&mut self, name: &str) {
        self.spawn_reader(name, true);
    }

    fn spawn_reader(&mut self, name: &str, tail: bool) {
        let started_ms = self.history.now_ms();
        let master = self.cluster.master_addr();
        let log = self.log.clone();
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let end: Arc<Mutex<Option<ReaderEnd>>> = Arc::default();
        let (out, fin) = (events.clone(), end.clone());
        let task = self.rt.spawn(async move {
            // Every event, skipped ranges included: the checker counts those (K).
            let push = |event: ReplayEvent| lock(&out).push(contract_event(event));
            let result: Result<(), ClientError> = async {
                let client = Client::connect(&master).await?;
                if tail {
                    let mut t = client
                        .tail(&log, TailFrom::Start, ReplayOptions::default())
                        .await?;
                    while let Some(event) = t.next().await {
                        push(event?);
                    }
                } else {
                    let mut r = client.replay(&log, ReplayOptions::default()).await?;
                    while let Some(event) = r.next().await {
                        push(event?);
                    }
                }
                Ok(())
            }
            .await;
            *lock(&fin) = Some(match result {
                Ok(()) => ReaderEnd::Complete,
                Err(e) => ReaderEnd::Failed(e.to_string()),
            });
        });
        self.readers.push(Reader {
            name: name.to_owned(),
            started_ms,
            started: Instant::now(),
            tail,
            events,
            end,
            task,
        });
    }

    /// Freezes the writers ([`Chaos::freeze`]) and returns the open chunk then: (handle,
    /// primary, secondaries). With no attempt in flight the chunk cannot roll before the
    /// scenario faults it; after the fault, [`Chaos::thaw`], and [`Chaos::assert_sealed`]
    /// confirms it landed.
    pub(crate) fn freeze_on_open_chunk(&self) -> (String, usize, Vec<usize>) {
        self.freeze();
        self.open_chunk()
    }

    /// Declares that the scenario may lose every complete replica of a sealed chunk: each
    /// chunk the master then salvages with a lost tail must show in every final replay as one
    /// skipped range (and nothing acknowledged may be in it). Otherwise no replay may skip.
    pub(crate) fn expect_salvage(&mut self) {
        self.salvage_expected = true;
    }

    /// Confirms that the fault a scenario dealt to open chunk `handle` (picked with
    /// [`Chaos::freeze_on_open_chunk`]) landed: the master's log says the chunk was sealed
    /// within `timeout`, on `replicas` replicas when given (those the fault left answering the
    /// fence: the fault was in force when it was sealed, whatever the reason, which may be a
    /// full chunk). Returns the seal's reason.
    pub(crate) fn assert_sealed(
        &mut self,
        handle: &str,
        replicas: Option<usize>,
        timeout: Duration,
    ) -> String {
        let master_log = |needle: &str| {
            self.cluster
                .server_stderr(Role::Master)
                .lines()
                .find(|l| l.contains(needle) && l.contains(&format!("chunk={handle}")))
                .map(str::to_owned)
        };
        let sealed = wait_until(&format!("chunk {handle} sealed"), timeout, || {
            master_log("chunk sealed")
        });
        let started = master_log("sealing chunk").expect("a seal logs its start before its end");
        let reason = field(&started, "reason");
        let sealed_on = field(&sealed, "replicas");
        if let Some(replicas) = replicas {
            assert_eq!(
                sealed_on,
                replicas.to_string(),
                "chunk {handle} was sealed on other replicas than the fault left: {sealed}"
            );
        }
        self.note(format!(
            "chunk {handle} sealed on {sealed_on} replicas ({reason})"
        ));
        reason
    }

    /// Waits (polling the master through the client library every 5 ms, so within milliseconds)
    /// until chunk `handle` (16 hex digits) is sealed, then until the next acknowledgement.
    pub(crate) fn wait_sealed_then_ack(&self, handle: &str, timeout: Duration) {
        let master = self.cluster.master_addr();
        let deadline = Instant::now() + timeout;
        let sealed = self.rt.block_on(async {
            let client = Client::connect(&master).await.ok()?;
            while Instant::now() < deadline {
                if let Ok(stat) = client.stat_log(&self.log).await
                    && stat
                        .chunks
                        .iter()
                        .any(|c| format!("{}", c.handle) == handle && c.state == ChunkState::Sealed)
                {
                    return Some(());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        });
        assert!(
            sealed.is_some(),
            "chunk {handle} not sealed within {timeout:?}"
        );
        let target = self.acked() + 1;
        while self.acked() < target {
            assert!(
                Instant::now() < deadline,
                "no acknowledgement after the seal"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the writers: each finishes or resolves its record in flight (bounded).
    ///
    /// # Panics
    /// If a writer panicked or did not end in time: the run then proves nothing.
    pub(crate) fn stop_writers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.frozen.store(false, Ordering::Relaxed);
        let writers = std::mem::take(&mut self.writers);
        let bound = ATTEMPT_TIMEOUT + Duration::from_secs(5);
        self.rt.block_on(async {
            for (i, w) in writers.into_iter().enumerate() {
                match tokio::time::timeout(bound, w).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("writer task {i} failed: {e}"),
                    Err(_) => panic!("writer task {i} did not end within {bound:?} of the stop"),
                }
            }
        });
    }

    /// Holds the writers: no new attempt starts, and this returns once every attempt in flight
    /// has its outcome (bounded), so the log's open chunk stays where it is until
    /// [`Chaos::thaw`]. Scenarios freeze around picking a victim and faulting it, so the fault
    /// lands on the chunk they picked.
    pub(crate) fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
        wait_until(
            "the writers' attempts in flight to end",
            ATTEMPT_TIMEOUT + Duration::from_secs(5),
            || (self.in_flight.load(Ordering::Relaxed) == 0).then_some(()),
        );
    }

    /// Lets the writers go on after [`Chaos::freeze`].
    pub(crate) fn thaw(&self) {
        self.frozen.store(false, Ordering::Relaxed);
    }

    /// Ends every reader and returns what each returned: replays get until
    /// [`REPLAY_BOUND`] after their start (else they hung), tails get [`TAIL_CATCH_UP`] to hold
    /// every acknowledged record (the writers have stopped), then are stopped.
    fn collect_readers(&mut self) -> Vec<ReaderRun> {
        let entries = self.history.entries();
        let mut runs = Vec::new();
        for r in std::mem::take(&mut self.readers) {
            let ended = |r: &Reader| lock(&r.end).is_some();
            if r.tail {
                // Every acknowledged attempt (invariant T), not only those before it began (R).
                let acked: HashSet<(u32, u64, u32)> = entries
                    .iter()
                    .filter(|e| matches!(e.op, Op::Ok { .. }))
                    .map(|e| (e.w, e.seq, e.attempt.unwrap_or(0)))
                    .collect();
                let deadline = Instant::now() + TAIL_CATCH_UP;
                while !ended(&r) && Instant::now() < deadline {
                    let read: HashSet<(u32, u64, u32)> = lock(&r.events)
                        .iter()
                        .filter_map(|e| match e {
                            Event::Record(rec) => Payload::decode(&rec.payload).ok(),
                            Event::Skipped { .. } => None,
                        })
                        .map(|p| (p.w, p.seq, p.attempt))
                        .collect();
                    if acked.is_subset(&read) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            } else {
                let deadline = r.started + REPLAY_BOUND;
                while !ended(&r) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            r.task.abort();
            let end = lock(&r.end).clone().unwrap_or_else(|| {
                if r.tail {
                    ReaderEnd::Stopped
                } else {
                    ReaderEnd::Hung(format!("not ended {REPLAY_BOUND:?} after it began"))
                }
            });
            let events = std::mem::take(&mut *lock(&r.events));
            let records: Vec<&Record> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Record(rec) => Some(rec),
                    Event::Skipped { .. } => None,
                })
                .collect();
            // Where it stopped, and that chunk as the master sees it now (for a stuck tail).
            let last = records.last().map(|rec| (rec.chunk, rec.offset));
            let chunk = last.and_then(|(c, _)| {
                self.cluster
                    .stat(&self.log)
                    .chunks
                    .into_iter()
                    .find(|s| s.index == c)
            });
            eprintln!(
                "chaos {}: {} (began {:.2} s): {} records, {} skipped ranges, {end:?}; last \
                 record at (chunk, offset) {last:?}, that chunk now: {chunk:?}",
                self.name,
                r.name,
                r.started_ms as f64 / 1000.0,
                records.len(),
                events.len() - records.len()
            );
            runs.push(ReaderRun {
                name: r.name,
                started_ms: r.started_ms,
                end,
                events,
            });
        }
        runs
    }

    /// Acknowledgements so far.
    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more records are acknowledged (bounded).
    pub(crate) fn wait_acks(&self, n: u64, timeout: Duration) {
        let target = self.acked() + n;
        wait_until(&format!("{n} more acknowledgements"), timeout, || {
            (self.acked() >= target).then_some(())
        });
    }

    /// The log's current open chunk's (primary index, secondary indices), from `stat`, once
    /// its three replicas are reported (a chunk allocated a moment ago may not be yet).
    pub(crate) fn open_chunk_roles(&self) -> (usize, Vec<usize>) {
        let (_, primary, secondaries) = self.open_chunk();
        (primary, secondaries)
    }

    /// The log's current open chunk: (handle, primary index, secondary indices), from one
    /// `stat`, once its three replicas are reported.
    pub(crate) fn open_chunk(&self) -> (String, usize, Vec<usize>) {
        let index = |addr: &str| self.cluster.chunkserver_index(addr);
        wait_until(
            "an open chunk with 3 replicas",
            Duration::from_secs(30),
            || {
                let stat = self.cluster.stat(&self.log);
                let open = stat.chunks.iter().find(|c| !c.is_sealed())?;
                let primary = open.primary.clone()?;
                let secondaries: Vec<usize> = open
                    .replicas
                    .iter()
                    .filter(|a| **a != primary)
                    .map(|a| index(a))
                    .collect();
                (secondaries.len() == 2)
                    .then(|| (open.handle.clone(), index(&primary), secondaries))
            },
        )
    }

    /// The file of chunk `handle` (16 hex digits) on chunkserver `i`.
    pub(crate) fn chunk_file(&self, i: usize, handle: &str) -> PathBuf {
        self.cluster
            .data_dir(Role::Chunkserver(i))
            .join("chunks")
            .join(format!("{handle}.chunk"))
    }

    /// Sealed chunks holding records, with their replicas' chunkserver indices, from `stat`.
    pub(crate) fn sealed_chunks(&self) -> Vec<(String, u64, Vec<usize>)> {
        let stat = self.cluster.stat(&self.log);
        stat.sealed()
            .iter()
            .filter(|c| c.length > 32 && c.replicas.len() >= 3)
            .map(|c| {
                let holders = c
                    .replicas
                    .iter()
                    .map(|a| self.cluster.chunkserver_index(a))
                    .collect();
                (c.handle.clone(), c.length, holders)
            })
            .collect()
    }

    /// The shared history, for scenarios that run their own writers.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    fn spawn_sequential(&mut self, w: u32, body: (usize, usize)) {
        let master = self.cluster.master_addr();
        let log = self.log.clone();
        let history = self.history.clone();
        let stop = self.stop.clone();
        let frozen = self.frozen.clone();
        let in_flight = self.in_flight.clone();
        let acked = self.acked.clone();
        let seed = self.seed ^ u64::from(w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.writers.push(self.rt.spawn(async move {
            let mut rng = workload::Rng::new(seed);
            let client = connect(&master, &stop).await;
            let Some(client) = client else { return };
            let mut appender = None;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let body_bytes = random_body(&mut rng, body);
                let mut attempt = 0u32;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if appender.is_none() {
                        match client.appender(&log).await {
                            Ok(a) => appender = Some(a),
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                    }
                    if frozen.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let a = appender.as_ref().expect("set above");
                    let payload = Payload::new(w, seq, attempt, body_bytes.clone());
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    history.invoke(w, seq, attempt);
                    let result = tokio::time::timeout(
                        ATTEMPT_TIMEOUT,
                        a.append(Bytes::from(payload.encode())),
                    )
                    .await;
                    let _resolved = Resolved(&in_flight);
                    match result {
                        Ok(Ok(ack)) => {
                            history.ok(w, seq, attempt, placed(&ack), Some(cairn_id(&ack)));
                            acked.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(Err(e)) if definite(&e) => {
                            history.fail(w, seq, attempt, &e.to_string(), true);
                            break;
                        }
                        Ok(Err(e)) => {
                            history.info(w, seq, attempt, &e.to_string());
                        }
                        Err(_) => {
                            history.info(w, seq, attempt, "no answer within the attempt timeout")
                        }
                    }
                    // Indeterminate: a new appender (a new writer id) retries the same record.
                    appender = None;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    fn spawn_pipelined(&mut self, w: u32, body: (usize, usize)) {
        let master = self.cluster.master_addr();
        let log = self.log.clone();
        let history = self.history.clone();
        let stop = self.stop.clone();
        let frozen = self.frozen.clone();
        let in_flight_count = self.in_flight.clone();
        let acked = self.acked.clone();
        let seed = self.seed ^ 0x5eed;
        self.writers.push(self.rt.spawn(async move {
            let mut rng = workload::Rng::new(seed);
            let Some(client) = connect(&master, &stop).await else {
                return;
            };
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(appender) = client.appender(&log).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut in_flight = futures_util::stream::FuturesUnordered::new();
                loop {
                    while in_flight.len() < PIPELINE_DEPTH
                        && !stop.load(Ordering::Relaxed)
                        && !frozen.load(Ordering::Relaxed)
                    {
                        seq += 1;
                        let p = Payload::new(w, seq, 0, random_body(&mut rng, body));
                        in_flight_count.fetch_add(1, Ordering::Relaxed);
                        history.invoke(w, seq, 0);
                        let fut = appender.append(Bytes::from(p.encode()));
                        let s = seq;
                        in_flight.push(async move {
                            (s, tokio::time::timeout(ATTEMPT_TIMEOUT, fut).await)
                        });
                    }
                    use futures_util::StreamExt;
                    if in_flight.is_empty() && frozen.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let Some((s, result)) = in_flight.next().await else {
                        return;
                    };
                    let _resolved = Resolved(&in_flight_count);
                    let mut closed = false;
                    match result {
                        Ok(Ok(ack)) => {
                            history.ok(w, s, 0, placed(&ack), Some(cairn_id(&ack)));
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) if definite(&e) => history.fail(w, s, 0, &e.to_string(), true),
                        Ok(Err(e)) => {
                            history.info(w, s, 0, &e.to_string());
                            closed = true;
                        }
                        Err(_) => {
                            history.info(w, s, 0, "no answer within the attempt timeout");
                            closed = true;
                        }
                    }
                    if closed {
                        // The appender gave up: resolve what it still holds, start a new one.
                        while let Some((s, result)) = in_flight.next().await {
                            let _resolved = Resolved(&in_flight_count);
                            match result {
                                Ok(Ok(ack)) => {
                                    history.ok(w, s, 0, placed(&ack), Some(cairn_id(&ack)));
                                    acked.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(Err(e)) => history.info(w, s, 0, &e.to_string()),
                                Err(_) => {
                                    history.info(w, s, 0, "no answer within the attempt timeout")
                                }
                            }
                        }
                        break;
                    }
                }
            }
        }));
    }

    /// Stops the writers (each finishes or resolves its record in flight), heals every fault
    /// the caller lists by restarting stopped servers, waits for every sealed chunk to have
    /// exactly three good replicas, and checks the history against replays and raw replica scans. Prints the
    /// seed, the fault schedule and the checker's counts; panics on any violation.
    pub(crate) fn finish(mut self) {
        self.note("stop the writers");
        self.stop_writers();
        self.cluster.heal();
        for i in 0..self.cluster.chunkserver_addrs().len() {
            if self.cluster.pid(Role::Chunkserver(i)).is_none() {
                self.note(format!("heal: start chunkserver {i}"));
                self.cluster.start_server(Role::Chunkserver(i));
            }
        }
        if self.cluster.pid(Role::Master).is_none() {
            self.note("heal: start the master");
            self.cluster.start_server(Role::Master);
        }
        // Every server the scenario did not stop itself is still the process it was.
        self.cluster.assert_running();
        // Right after healing: one more replay for R.
        self.spawn_replay("replay right after healing");
        // Liveness (A): a new append succeeds after healing; it is in the history like any other.
        let line = Payload::new(PROBE_WRITER, 1, 0, b"probe after healing".to_vec());
        self.history.invoke(PROBE_WRITER, 1, 0);
        let probe = self.cluster.append(
            "probe",
            &self.log,
            vec![line.encode_text()],
            Duration::from_secs(60),
        );
        probe.assert_all_acked();
        let ack = &probe.acks[0];
        self.history.ok(
            PROBE_WRITER,
            1,
            0,
            (ack.chunk, ack.offset),
            Some((ack.writer.clone(), ack.sequence)),
        );
        let healed = Instant::now();
        // Exactly three: with a fourth, the master is deleting the excess one (a chunkserver came
        // back after its repair), and its file can vanish between the listing and the reads below.
        let stat = wait_until(
            "exactly three good replicas of every sealed chunk",
            Duration::from_secs(90),
            || {
                let stat = self.cluster.stat(&self.log);
                let unconverged = stat
                    .sealed()
                    .iter()
                    .filter(|c| c.length > 32 && c.replicas.len() != 3)
                    .count();
                (unconverged == 0).then_some(stat)
            },
        );
        eprintln!(
            "chaos {}: full replication {:.1} s after healing; {} chunks ({} sealed)",
            self.name,
            healed.elapsed().as_secs_f64(),
            stat.chunks.len(),
            stat.sealed().len()
        );
        self.assert_sealed_replicas_identical(&stat);

        let dedup = self
            .cluster
            .replay(&self.log, false, Duration::from_secs(120));
        let all = self
            .cluster
            .replay(&self.log, true, Duration::from_secs(120));
        let later = self
            .cluster
            .replay(&self.log, false, Duration::from_secs(120));
        let scans = self.scan_replicas(&stat);
        let readers = self.collect_readers();
        let entries = self.history.entries();
        let mut input = Input::new(&entries, &Names::Payloads, &dedup.events, &all.events);
        input.later = Some(&later.events);
        input.readers = &readers;
        input.replicas = &scans;
        let salvaged = self.salvaged_with_lost_tails();
        eprintln!(
            "chaos {}: {salvaged} chunk(s) salvaged with a lost tail (expected: {})",
            self.name,
            if self.salvage_expected { "any" } else { "none" }
        );
        // Each lost tail is one skipped range in every final replay; with no salvage expected,
        // none (and a salvage then shows as K violations).
        input.expected_skips = if self.salvage_expected { salvaged } else { 0 };
        let report = check(&input);
        self.cluster.assert_running();
        eprintln!(
            "chaos {}: seed {}; fault schedule:\n{}\n{report}",
            self.name,
            self.seed,
            self.schedule.join("\n")
        );
        report.assert_ok();
    }

    /// Invariant C: every sealed chunk's good replicas hold identical bytes, of the sealed length.
    fn assert_sealed_replicas_identical(&self, stat: &LogStat) {
        for c in stat.sealed() {
            let mut copies: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for addr in &c.replicas {
                let path = self.chunk_file(self.cluster.chunkserver_index(addr), &c.handle);
                let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                    panic!("chunk {} on {addr}: {}: {e}", c.index, path.display())
                });
                assert_eq!(
                    bytes.len() as u64,
                    c.length,
                    "chunk {} on {addr}: length",
                    c.index
                );
                copies.insert(addr.clone(), bytes);
            }
            let mut it = copies.values();
            if let Some(first) = it.next() {
                assert!(
                    it.all(|b| b == first),
                    "chunk {}: sealed replicas differ",
                    c.index
                );
            }
        }
    }

    /// Sealed chunks the master cut back with a lost tail (`lost_end` past their length).
    fn salvaged_with_lost_tails(&self) -> usize {
        let master = self.cluster.master_addr();
        self.rt.block_on(async {
            let client = Client::connect(&master).await.expect("connect for stat");
            let stat = client.stat_log(&self.log).await.expect("stat the log");
            stat.chunks.iter().filter(|c| c.lost_end > c.length).count()
        })
    }

    /// Every chunk file of every chunkserver, scanned with the record parser (U and I).
    fn scan_replicas(&self, stat: &LogStat) -> Vec<ReplicaScan> {
        let index: HashMap<&str, u64> = stat
            .chunks
            .iter()
            .map(|c| (c.handle.as_str(), c.index))
            .collect();
        let mut scans = Vec::new();
        for i in 0..self.cluster.chunkserver_addrs().len() {
            let dir = self.cluster.data_dir(Role::Chunkserver(i)).join("chunks");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(handle) = name.strip_suffix(".chunk") else {
                    continue;
                };
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                // Other logs (the harness's readiness probes) are not this scenario's.
                let Some(&chunk) = index.get(handle) else {
                    continue;
                };
                let records = Scanner::new(bytes.get(32..).unwrap_or_default(), 32)
                    .filter_map(|item| match item {
                        ScanItem::Record {
                            offset,
                            id,
                            payload,
                        } => Some(Record {
                            chunk,
                            offset,
                            writer: writer_id(id.writer),
                            sequence: id.sequence,
                            payload: payload.to_vec(),
                        }),
                        _ => None,
                    })
                    .collect();
                scans.push(ReplicaScan {
                    name: format!("chunkserver {i} chunk {handle}"),
                    records,
                });
            }
        }
        scans
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Panics unless every chunkserver of `cluster` said at its (last) start that it runs in
/// power-cut mode (unsynced writes in memory, lost with the process).
pub(crate) fn assert_power_cut_mode(cluster: &Cluster) {
    for i in 0..cluster.chunkserver_addrs().len() {
        let log = cluster.server_stderr(Role::Chunkserver(i));
        assert!(
            log.contains("TEST MODE: unsynced writes live in memory"),
            "chunkserver {i} is not in power-cut mode"
        );
    }
}

/// The value of `name=` in a log line (quotes dropped), or an empty string.
fn field(line: &str, name: &str) -> String {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key.as_str()))
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

/// Counts one attempt in flight as resolved when dropped (after its outcome is recorded).
struct Resolved<'a>(&'a AtomicU64);

impl Drop for Resolved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks a reader's shared state; a reader task that panicked leaves it usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether an append error says the record was certainly not stored.
fn definite(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::RecordTooLarge { .. }
            | ClientError::LogNotFound { .. }
            | ClientError::InvalidArgument { .. }
    )
}

async fn connect(master: &str, stop: &AtomicBool) -> Option<Client> {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(c) = Client::connect(master).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Where an acknowledgement put its record: (chunk index, offset).
fn placed(ack: &cairn_client::AppendAck) -> (Option<u64>, Option<u64>) {
    (ack.chunk.map(u64::from), ack.offset.map(u64::from))
}

/// The Cairn id an acknowledgement names, as the checker compares writer ids.
fn cairn_id(ack: &cairn_client::AppendAck) -> (WriterId, u64) {
    (writer_id(ack.id.writer), ack.id.sequence)
}

/// A writer id as `cairn replay --json` prints it (a decimal number), so ids from the library
/// and from the CLI compare equal.
fn writer_id(writer: cairn_client::WriterId) -> WriterId {
    WriterId(u64::from(writer).to_string())
}

/// A library replay event as the checker takes it.
fn contract_event(event: ReplayEvent) -> Event {
    match event {
        ReplayEvent::Record {
            id,
            chunk,
            offset,
            payload,
        } => Event::Record(Record {
            chunk: u64::from(chunk),
            offset: offset.into(),
            writer: writer_id(id.writer),
            sequence: id.sequence,
            payload: payload.to_vec(),
        }),
        ReplayEvent::Skipped {
            chunk,
            offset,
            len,
            reason,
        } => Event::Skipped {
            raw: format!("chunk {chunk} offset {offset} len {len}: {reason}"),
        },
        // The checker must be taught any new kind of event before it can judge a run.
        other => panic!("a replay event the checker does not know: {other:?}"),
    }
}

/// A body of a random length in `lo..hi` with random bytes.
fn random_body(rng: &mut workload::Rng, (lo, hi): (usize, usize)) -> Vec<u8> {
    let len = rng.range(lo, hi);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}
