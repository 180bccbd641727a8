//! The chaos harness (RELIABILITY.md §4–§5): a real cluster (1 master + 4 chunkservers, short
//! timings, small chunks, optionally proxied and in power-cut mode), writers in this process
//! that record every attempt in a JSONL history, a fault schedule printed as it happens, and a
//! final phase that heals everything, waits for full replication, replays and checks.
//!
//! Writers use the client library directly: eight *sequential* writers (each waits for its
//! record's acknowledgement before the next; after an indeterminate outcome it retries the same
//! sequence as a new attempt through a new appender) and one *pipelined* writer (up to 16 records
//! in flight on one appender). Payloads are [`Payload`]s, so the checker can tell every record's
//! writer, sequence and attempt, and its integrity.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{Client, Error as ClientError, LogOptions};
use cairn_record::{ScanItem, Scanner};
use cairn_tests::history::{ReplicaScan, check};
use cairn_tests::{
    Cluster, ClusterOpts, History, LogStat, Payload, Record, Role, WriterId, wait_until, workload,
};
use tokio::task::JoinHandle;

/// Chunk capacity of chaos logs: small, so rolls and padding happen all the time.
pub(crate) const CHUNK_BYTES: u64 = 256 << 10;
/// Sequential writers.
pub(crate) const SEQUENTIAL_WRITERS: u32 = 8;
/// Records the pipelined writer keeps in flight.
pub(crate) const PIPELINE_DEPTH: usize = 16;
/// How long one attempt may take before the writer calls it indeterminate and retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(40);

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
}

impl Default for ChaosOpts {
    fn default() -> Self {
        ChaosOpts {
            chunkservers: 4,
            proxied: false,
            power_cut: false,
            writers: SEQUENTIAL_WRITERS,
            body: (64, 2048),
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
    acked: Arc<AtomicU64>,
    rt: tokio::runtime::Runtime,
    writers: Vec<JoinHandle<()>>,
    schedule: Vec<String>,
}

impl Chaos {
    /// Starts the cluster, creates the log and starts the writers.
    pub(crate) fn start(name: &str, opts: ChaosOpts) -> Chaos {
        let seed = workload::seed(name);
        let mut cluster_opts = ClusterOpts::fast_failure_detection();
        cluster_opts
            .master_args
            .extend(["--rpc-timeout-ms", "2000"].map(String::from));
        cluster_opts.chunkserver_args = [
            "--rpc-timeout-ms",
            "2000",
            "--scrub-interval-ms",
            "500",
            "--scrub-bytes-per-sec",
            "268435456",
        ]
        .map(String::from)
        .to_vec();
        cluster_opts.proxied = opts.proxied;
        if opts.power_cut {
            cluster_opts
                .chunkserver_env
                .push(("CAIRN_TEST_POWER_CUT".into(), "1".into()));
        }
        let cluster = Cluster::start(opts.chunkservers, cluster_opts);
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
                    LogOptions {
                        replication: 3,
                        min_replicas: 0,
                        chunk_bytes: CHUNK_BYTES,
                    },
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
            acked: Arc::new(AtomicU64::new(0)),
            rt,
            writers: Vec::new(),
            schedule: Vec::new(),
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

    /// Records a fault in the schedule (and prints it).
    pub(crate) fn fault(&mut self, what: impl Into<String>) {
        let line = format!(
            "{:>7.2} s  {}",
            self.started.elapsed().as_secs_f64(),
            what.into()
        );
        eprintln!("chaos {}: {line}", self.name);
        self.schedule.push(line);
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
                    let a = appender.as_ref().expect("set above");
                    let payload = Payload::new(w, seq, attempt, body_bytes.clone());
                    history.invoke(w, seq, attempt);
                    let result = tokio::time::timeout(
                        ATTEMPT_TIMEOUT,
                        a.append(Bytes::from(payload.encode())),
                    )
                    .await;
                    match result {
                        Ok(Ok(ack)) => {
                            history.ok(w, seq, attempt, ack.chunk.map(u64::from), ack.offset);
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
                    while in_flight.len() < PIPELINE_DEPTH && !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let p = Payload::new(w, seq, 0, random_body(&mut rng, body));
                        history.invoke(w, seq, 0);
                        let fut = appender.append(Bytes::from(p.encode()));
                        let s = seq;
                        in_flight.push(async move {
                            (s, tokio::time::timeout(ATTEMPT_TIMEOUT, fut).await)
                        });
                    }
                    use futures_util::StreamExt;
                    let Some((s, result)) = in_flight.next().await else {
                        return;
                    };
                    let mut closed = false;
                    match result {
                        Ok(Ok(ack)) => {
                            history.ok(w, s, 0, ack.chunk.map(u64::from), ack.offset);
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
                            match result {
                                Ok(Ok(ack)) => {
                                    history.ok(w, s, 0, ack.chunk.map(u64::from), ack.offset);
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
    /// the caller lists by restarting stopped servers, waits for every sealed chunk to have three
    /// good replicas, and checks the history against replays and raw replica scans. Prints the
    /// seed, the fault schedule and the checker's counts; panics on any violation.
    pub(crate) fn finish(mut self) {
        self.fault("stop the writers");
        self.stop.store(true, Ordering::Relaxed);
        let writers = std::mem::take(&mut self.writers);
        self.rt.block_on(async {
            for w in writers {
                let _ = tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(5), w).await;
            }
        });
        self.cluster.heal();
        for i in 0..self.cluster.chunkserver_addrs().len() {
            if self.cluster.pid(Role::Chunkserver(i)).is_none() {
                self.fault(format!("heal: start chunkserver {i}"));
                self.cluster.start_server(Role::Chunkserver(i));
            }
        }
        if self.cluster.pid(Role::Master).is_none() {
            self.fault("heal: start the master");
            self.cluster.start_server(Role::Master);
        }
        // Liveness (A): a new append succeeds after healing.
        let probe = self.cluster.append(
            "probe",
            &self.log,
            vec![b"probe after healing".to_vec()],
            Duration::from_secs(60),
        );
        probe.assert_all_acked();
        let healed = Instant::now();
        let stat = wait_until(
            "three good replicas of every sealed chunk",
            Duration::from_secs(90),
            || {
                let stat = self.cluster.stat(&self.log);
                let short = stat
                    .sealed()
                    .iter()
                    .filter(|c| c.length > 32 && c.replicas.len() < 3)
                    .count();
                (short == 0).then_some(stat)
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
        let probe_id = probe_writer(&probe);
        let keep = |r: &&Record| Some(&r.writer) != probe_id.as_ref();
        let dedup: Vec<Record> = dedup.records().filter(keep).cloned().collect();
        let all: Vec<Record> = all.records().filter(keep).cloned().collect();
        let later: Vec<Record> = later.records().filter(keep).cloned().collect();
        let scans = self.scan_replicas(&stat);
        let entries = self.history.entries();
        let mut report = check(&entries, &dedup, &all, &scans);
        report.check_stable(&dedup, &later);
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
                            writer: WriterId(format!("{:016x}", id.writer)),
                            sequence: id.sequence,
                            payload: payload.to_vec(),
                        }),
                        _ => None,
                    })
                    .filter(|r| r.payload != b"probe after healing")
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

/// The writer id of the probe run's one record, to leave it out of the check.
fn probe_writer(probe: &cairn_tests::AppendRun) -> Option<WriterId> {
    probe.writer()
}

/// A body of a random length in `lo..hi` with random bytes.
fn random_body(rng: &mut workload::Rng, (lo, hi): (usize, usize)) -> Vec<u8> {
    let len = rng.range(lo, hi);
    (0..len).map(|_| rng.next_u64() as u8).collect()
}
