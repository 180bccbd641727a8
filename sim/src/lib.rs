//! A whole Cairn cluster in one process under turmoil: the master, chunkservers and a client
//! host run as turmoil hosts on its simulated network and clock, the chunkservers on in-memory
//! disks ([`cairn_chunkserver::FaultyDisk`]) with their writers and blocking work inline, the
//! master with its files on an in-memory disk too, its blocking work inline and its randomness
//! seeded. A seeded fault schedule crashes and restarts chunkservers and the master (their
//! unsynced writes lost), and cuts and heals links; then everything is healed, and the history is checked: every acknowledged record
//! is replayed once, byte-exact, in per-writer order, and nothing unexpected is.
//!
//! # Layout
//! - [`net`]: the `Connector` and `incoming` seams over turmoil's TCP.
//! - [`run`]: one seeded run; [`Outcome`]: what it saw, the checker's verdict and a hash of the
//!   history (two runs of one seed must give the same hash).
//!
//! # Limits of this first simulator
//! Disk faults other than a crash
//! (EIO, ENOSPC, torn writes, flips) are not scheduled yet; nor are pauses, reordering, resumed
//! writers or tails.

pub mod net;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_chunkserver::store::schedule::Scheduling;
use cairn_chunkserver::{FaultyDisk, ServerDisk};
use cairn_client::{Client, LogOptions, ReplayEvent, ReplayOptions};
use cairn_files::Blocking;
use cairn_record::SplitMix64;

use crate::net::{SimConnector, incoming};

/// The master's host name and port.
const MASTER: &str = "master:7000";
/// Every chunkserver's port.
const CHUNKSERVER_PORT: u16 = 7001;
/// The client host.
const CLIENT: &str = "client";
/// The log the workload appends to.
const LOG: &str = "/sim";

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Seeds everything: the fault schedule, turmoil's network, the master, writer ids.
    pub seed: u64,
    /// Chunkservers (the log's replication factor is 3).
    pub chunkservers: usize,
    /// Concurrent appenders.
    pub appenders: usize,
    /// Records per appender.
    pub records: usize,
    /// Inject faults (else a fault-free run).
    pub faults: bool,
}

impl SimConfig {
    /// The default workload for `seed`: 4 chunkservers, 2 appenders of 150 records, faults on.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            chunkservers: 4,
            appenders: 2,
            records: 150,
            faults: true,
        }
    }
}

/// What a run saw and the checker's verdict.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Acknowledged records: (writer index, sequence) → (chunk, offset) if known.
    pub acked: BTreeMap<(usize, u64), Option<(u32, u64)>>,
    /// Appends that failed (indeterminate: they may be stored).
    pub failed: usize,
    /// The replay after healing: (writer index, sequence, chunk, offset), in log order.
    pub replayed: Vec<(usize, u64, u32, u64)>,
    /// Faults injected, in order, with the simulated time.
    pub faults: Vec<String>,
    /// Acknowledged records missing from the replay.
    pub lost: Vec<(usize, u64)>,
    /// Replayed records that were never appended, or with other bytes.
    pub unexpected: Vec<String>,
    /// Writers whose records replay out of sequence order.
    pub out_of_order: Vec<usize>,
    /// `Skipped` events of the replay.
    pub skipped: usize,
    /// Why the workload could not finish (the replay never succeeded, …).
    pub error: Option<String>,
    /// A hash of the acknowledgements and the replay: equal for two runs of one seed.
    pub history_hash: u64,
}

impl Outcome {
    /// Whether the checker found nothing wrong.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.unexpected.is_empty()
            && self.out_of_order.is_empty()
            && self.error.is_none()
    }
}

/// The payload of record `seq` of writer `w`: derived, so the checker knows every byte.
fn payload(w: usize, seq: u64) -> Bytes {
    let mut p = format!("w{w}-s{seq:06}-").into_bytes();
    p.resize(
        64 + (seq as usize * 37 + w * 11) % 700,
        b'a' + (seq % 26) as u8,
    );
    Bytes::from(p)
}

fn chunkserver_name(i: usize) -> String {
    format!("cs{i}")
}

/// Logs every role's tracing events to stderr with the simulated time, filtered by
/// `CAIRN_SIM_LOG` (e.g. `info`, `cairn_master=debug`); nothing when it is unset.
fn init_logging() {
    let Ok(filter) = std::env::var("CAIRN_SIM_LOG") else {
        return;
    };
    struct SimTime;
    impl tracing_subscriber::fmt::time::FormatTime for SimTime {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            write!(w, "[{:?}]", turmoil::sim_elapsed().unwrap_or_default())
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one seeded simulation and checks its history.
pub fn run(config: SimConfig) -> Outcome {
    init_logging();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rng = SplitMix64::new(config.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .simulation_duration(Duration::from_secs(600))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(Duration::from_millis(2))
        .build();

    let master_dir = dir.path().join("master");
    let seed = config.seed;
    // The master's files live on an in-memory disk too: a master crash loses what it had not
    // synced.
    let master_disk = FaultyDisk::new();
    let disk = master_disk.clone();
    sim.host("master", move || {
        let master_dir = master_dir.clone();
        let disk = disk.clone();
        async move {
            let mut c = cairn_master::Config::new(&master_dir);
            c.heartbeat = Duration::from_millis(200);
            c.dead_after = Duration::from_secs(2);
            c.rpc_timeout = Duration::from_secs(2);
            let seams = cairn_master::Seams {
                connector: Arc::new(SimConnector),
                disk: cairn_files::shared(disk),
                blocking: Blocking::Inline,
                seed: Some(seed),
            };
            let conns = incoming(7000).await?;
            cairn_master::serve_with(c, MASTER, conns, seams, std::future::pending()).await?;
            Ok(())
        }
    });

    let disks: Vec<FaultyDisk> = (0..config.chunkservers)
        .map(|_| FaultyDisk::new())
        .collect();
    for (i, disk) in disks.iter().enumerate() {
        let name = chunkserver_name(i);
        let data = dir.path().join(&name);
        std::fs::create_dir_all(&data).expect("a chunkserver directory");
        let disk = disk.clone();
        let host = name.clone();
        sim.host(host.as_str(), move || {
            let (name, data, disk) = (name.clone(), data.clone(), disk.clone());
            async move {
                let mut c = cairn_chunkserver::Config::new(&data);
                c.listen = format!("0.0.0.0:{CHUNKSERVER_PORT}");
                c.advertise = format!("{name}:{CHUNKSERVER_PORT}");
                c.master = MASTER.to_owned();
                c.heartbeat_ms = 200;
                c.rpc_timeout_ms = 2_000;
                c.scrub_interval_ms = 0;
                let seams = cairn_chunkserver::Seams {
                    connector: Arc::new(SimConnector),
                    disk: ServerDisk::Memory(disk),
                    writers: Scheduling::Inline,
                    blocking: Blocking::Inline,
                };
                let conns = incoming(CHUNKSERVER_PORT).await?;
                cairn_chunkserver::serve_with(c, conns, seams, std::future::pending()).await?;
                Ok(())
            }
        });
    }

    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let out = outcome.clone();
    let workload = config;
    sim.client(CLIENT, async move {
        let result = workload_run(workload, out.clone()).await;
        if let Err(e) = result {
            out.lock().expect("outcome lock").error = Some(e);
        }
        Ok(())
    });

    // The fault schedule: faults while the workload runs, then everything healed.
    let heal_at = Duration::from_secs(20);
    let mut next_fault = Duration::from_millis(500 + rng.below(1_000));
    let mut down: Option<(String, Duration)> = None;
    let mut cut: Option<(String, String, Duration)> = None;
    let mut faults = Vec::new();
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                outcome.lock().expect("outcome lock").error = Some(format!("simulation: {e}"));
                break;
            }
        }
        let now = sim.elapsed();
        if let Some((host, until)) = down.clone()
            && (now >= until || now >= heal_at)
        {
            sim.bounce(host.as_str());
            faults.push(format!("{now:?} restart {host}"));
            down = None;
        }
        if let Some((a, b, until)) = cut.clone()
            && (now >= until || now >= heal_at)
        {
            sim.repair(a.as_str(), b.as_str());
            faults.push(format!("{now:?} heal {a}-{b}"));
            cut = None;
        }
        if !config.faults || now >= heal_at || now < next_fault {
            continue;
        }
        next_fault = now + Duration::from_millis(300 + rng.below(2_000));
        match rng.below(3) {
            0 if down.is_none() => {
                let i = rng.below(config.chunkservers as u64) as usize;
                let host = chunkserver_name(i);
                // The disk first: the store's last writes during the shutdown cannot land.
                disks[i].crash(0);
                sim.crash(host.as_str());
                let until = now + Duration::from_millis(500 + rng.below(3_000));
                faults.push(format!("{now:?} crash {host} (unsynced writes lost)"));
                down = Some((host, until));
            }
            1 if down.is_none() => {
                // As for a chunkserver: the disk first, so nothing unsynced survives.
                master_disk.crash(0);
                sim.crash("master");
                let until = now + Duration::from_millis(200 + rng.below(1_500));
                faults.push(format!("{now:?} crash master (unsynced writes lost)"));
                down = Some(("master".to_owned(), until));
            }
            _ if cut.is_none() => {
                let mut hosts: Vec<String> =
                    (0..config.chunkservers).map(chunkserver_name).collect();
                hosts.push("master".to_owned());
                hosts.push(CLIENT.to_owned());
                let a = rng.below(hosts.len() as u64) as usize;
                let mut b = rng.below(hosts.len() as u64 - 1) as usize;
                if b >= a {
                    b += 1;
                }
                let (a, b) = (hosts[a].clone(), hosts[b].clone());
                sim.partition(a.as_str(), b.as_str());
                let until = now + Duration::from_millis(200 + rng.below(2_000));
                faults.push(format!("{now:?} cut {a}-{b}"));
                cut = Some((a, b, until));
            }
            _ => {}
        }
    }

    let mut outcome = outcome.lock().expect("outcome lock").clone();
    outcome.faults = faults;
    check(&mut outcome, &config);
    outcome
}

/// The client host's work: create the log, append from every appender at once, then (after the
/// faults are healed) replay it.
async fn workload_run(config: SimConfig, out: Arc<Mutex<Outcome>>) -> Result<(), String> {
    let client = retry("connect", || {
        Client::with_connector(MASTER, Arc::new(SimConnector))
    })
    .await?;
    client.seed_writer_ids(config.seed ^ 0x5151_5151);
    let options = LogOptions {
        replication: 3,
        min_replicas: 0,
        chunk_bytes: 16 << 10,
    };
    retry("create the log", || async {
        match client.create_log(LOG, options).await {
            Err(cairn_client::Error::LogExists { .. }) => Ok(()),
            other => other.map(drop),
        }
    })
    .await?;
    let mut tasks = Vec::new();
    for w in 0..config.appenders {
        let client = client.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let appender = retry("open an appender", || client.appender(LOG)).await?;
            let writer = appender.writer_id();
            // Appends spread over the fault window: a burst of 5 every 100 ms of simulated
            // time, all of them in flight until answered.
            let mut acks = Vec::new();
            for s in 1..=config.records as u64 {
                acks.push((s, appender.append(payload(w, s))));
                if s % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            for (s, ack) in acks {
                let result = ack.await;
                let mut o = out.lock().expect("outcome lock");
                match result {
                    Ok(a) => {
                        assert_eq!(a.id.sequence, s, "acknowledged in sequence");
                        o.acked.insert((w, s), a.chunk.zip(a.offset));
                    }
                    Err(_) => o.failed += 1,
                }
            }
            let _ = appender.close().await;
            Ok::<u64, String>(writer)
        }));
    }
    let mut writers = BTreeMap::new();
    for (w, t) in tasks.into_iter().enumerate() {
        let writer = t.await.map_err(|e| format!("appender {w}: {e}"))??;
        writers.insert(writer, w);
    }
    // After the faults: the heal time has passed once every appender finished or this waits.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(25)).await;
    let replayed = retry("replay", || async {
        let mut replay = client.replay(LOG, ReplayOptions::default()).await?;
        let mut records = Vec::new();
        let mut skipped = 0;
        while let Some(event) = replay.next().await {
            match event? {
                ReplayEvent::Record {
                    id,
                    chunk,
                    offset,
                    payload: p,
                } => records.push((id, chunk, offset, p)),
                ReplayEvent::Skipped { .. } => skipped += 1,
            }
        }
        Ok::<_, cairn_client::Error>((records, skipped))
    })
    .await?;
    let mut o = out.lock().expect("outcome lock");
    o.skipped = replayed.1;
    for (id, chunk, offset, p) in replayed.0 {
        match writers.get(&id.writer) {
            Some(&w) if p == payload(w, id.sequence) => {
                o.replayed.push((w, id.sequence, chunk, offset))
            }
            Some(&w) => o.unexpected.push(format!(
                "writer {w} sequence {} replayed with other bytes",
                id.sequence
            )),
            None => o
                .unexpected
                .push(format!("unknown writer {:016x}", id.writer)),
        }
    }
    Ok(())
}

/// Retries `f` every 200 ms of simulated time for up to 60 s.
async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut last = String::new();
    for _ in 0..300 {
        match f().await {
            Ok(t) => return Ok(t),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{what}: gave up after 60 s: {last}"))
}

/// The checker: lost, unexpected, order; and the history hash.
fn check(o: &mut Outcome, config: &SimConfig) {
    let seen: BTreeSet<(usize, u64)> = o.replayed.iter().map(|&(w, s, _, _)| (w, s)).collect();
    o.lost = o
        .acked
        .keys()
        .filter(|k| !seen.contains(k))
        .copied()
        .collect();
    for w in 0..config.appenders {
        let seqs: Vec<u64> = o
            .replayed
            .iter()
            .filter(|r| r.0 == w)
            .map(|r| r.1)
            .collect();
        if seqs.windows(2).any(|p| p[0] >= p[1]) {
            o.out_of_order.push(w);
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    o.acked.hash(&mut h);
    o.replayed.hash(&mut h);
    o.failed.hash(&mut h);
    o.history_hash = h.finish();
}
