//! A whole Cairn cluster in one process under turmoil: the master, chunkservers and two client
//! hosts run as turmoil hosts on its simulated network and clock, the chunkservers on in-memory
//! disks ([`cairn_chunkserver::FaultyDisk`]) with their writers and blocking work inline, the
//! master with its files on an in-memory disk too (crashed with it), its blocking work inline
//! and its randomness seeded. A seeded fault schedule ([`faults`]) crashes, pauses, partitions,
//! slows and breaks links, fills and damages disks, while appenders, a resumed writer, replays
//! and a tail run ([`workload`]); then everything is healed and the whole history is checked
//! ([`check`]).
//!
//! # Layout
//! - [`net`]: the `Connector` and `incoming` seams over turmoil's TCP.
//! - [`faults`]: the nemesis (which faults, how often, how they are healed).
//! - [`workload`]: what the client hosts do and record.
//! - [`check`]: the history and the checker's classes of violation.
//! - [`run`]: one seeded run; [`Outcome`]: what it saw, the verdict and a hash of the history
//!   (two runs of one seed must give the same hash).
//!
//! The binary `simulate` (`cargo run -p cairn-sim --bin simulate -- SEED`) runs one seed in a
//! fresh process and prints its report and history hash.
//!
//! # Limits of this simulator
//! One seed gives one history in a fresh process, every time; a second run of a seed in the same
//! process can differ. The cause: when turmoil crashes a host it drops the host's tokio runtime,
//! which shuts its tasks down shard by shard, and a task's shard is its task id modulo 4; task ids
//! come from one counter for the whole process, so the order in which a crashed host's
//! connections close (and its peers see them break) depends on how many tasks the process made
//! before. Every seed therefore runs in a fresh process (the `simulate` binary), in the suite, in
//! sweeps and in replays.

pub mod check;
pub mod faults;
pub mod net;
pub mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_chunkserver::store::schedule::Scheduling;
use cairn_chunkserver::{FaultyDisk, ServerDisk};
use cairn_files::Blocking;

use crate::check::History;
pub use crate::check::Outcome;
use crate::faults::Nemesis;
use crate::net::{SimConnector, incoming};
use crate::workload::Shared;

/// The master's host name and port.
const MASTER: &str = "master:7000";
/// The master's host name.
const MASTER_HOST: &str = "master";
/// Every chunkserver's port.
const CHUNKSERVER_PORT: u16 = 7001;
/// The writer client host.
const CLIENT: &str = "client";
/// The reader client host.
const READER: &str = "reader";
/// The log the workload appends to.
const LOG: &str = "/sim";

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Seeds everything: the fault schedule, turmoil's network, the master, writer ids.
    pub seed: u64,
    /// Chunkservers (the log's replication factor is 3).
    pub chunkservers: usize,
    /// Concurrent appenders with random writer ids.
    pub appenders: usize,
    /// Records per writer.
    pub records: usize,
    /// Also a writer with an application-chosen id that restarts halfway and resumes.
    pub resumed_writer: bool,
    /// Inject faults (else a fault-free run).
    pub faults: bool,
}

impl SimConfig {
    /// The default workload for `seed`: 4 chunkservers, 2 appenders and a resumed writer of 150
    /// records each, faults on.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            chunkservers: 4,
            appenders: 2,
            records: 150,
            resumed_writer: true,
            faults: true,
        }
    }

    /// When every fault is healed (simulated time).
    pub fn heal_at(&self) -> Duration {
        Duration::from_secs(20)
    }

    /// When every append must have been answered (acknowledged or failed).
    pub fn liveness_deadline(&self) -> Duration {
        self.heal_at() + Duration::from_secs(20)
    }
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
    // Each master process (the first, and every restart) draws handles from its own seed, as a
    // real one does from its random seed. One seed for all of them let a restarted master, whose
    // crash had lost the unsynced tail of its operation log, draw again a handle it had handed
    // out before the crash (seed 46417: a tail holding the old handle read another chunk there).
    let boots = Arc::new(std::sync::atomic::AtomicU64::new(0));
    sim.host("master", move || {
        let master_dir = master_dir.clone();
        let disk = disk.clone();
        let boot = boots.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = seed ^ boot.wrapping_mul(0xd6e8_feb8_6659_fd93);
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
                metrics: Default::default(),
                tls: None,
            };
            let conns = incoming(7000).await?;
            cairn_master::serve_with(c, MASTER, conns, seams, std::future::pending()).await?;
            Ok(())
        }
    });

    let disks: Vec<FaultyDisk> = (0..config.chunkservers)
        .map(|_| FaultyDisk::new())
        .collect();
    let data_dirs: Vec<PathBuf> = (0..config.chunkservers)
        .map(|i| dir.path().join(chunkserver_name(i)))
        .collect();
    for (i, disk) in disks.iter().enumerate() {
        let name = chunkserver_name(i);
        let data = data_dirs[i].clone();
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
                // Scrubbing finds flipped bytes in sealed replicas before a reader does.
                c.scrub_interval_ms = 3_000;
                let seams = cairn_chunkserver::Seams {
                    connector: Arc::new(SimConnector),
                    disk: ServerDisk::Memory(disk),
                    writers: Scheduling::Inline,
                    blocking: Blocking::Inline,
                    metrics: Default::default(),
                    tls: None,
                };
                let conns = incoming(CHUNKSERVER_PORT).await?;
                cairn_chunkserver::serve_with(c, conns, seams, std::future::pending()).await?;
                Ok(())
            }
        });
    }

    let history = Arc::new(Mutex::new(History::default()));
    let shared = Shared {
        config,
        history: history.clone(),
        disks: disks.clone(),
        data_dirs: data_dirs.clone(),
        final_done: Arc::new(Mutex::new(false)),
    };
    for (host, reader) in [(CLIENT, false), (READER, true)] {
        let shared = shared.clone();
        let h = history.clone();
        sim.client(host, async move {
            let result = if reader {
                workload::reader_host(shared).await
            } else {
                workload::writer_host(shared).await
            };
            if let Err(e) = result {
                h.lock().expect("history lock").error.get_or_insert(e);
            }
            Ok(())
        });
    }

    let mut nemesis = Nemesis::new(config, disks, data_dirs, master_disk);
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                history
                    .lock()
                    .expect("history lock")
                    .error
                    .get_or_insert(format!("simulation: {e}"));
                break;
            }
        }
        let now = sim.elapsed();
        nemesis.step(&mut sim, now);
    }
    let history = history.lock().expect("history lock");
    check::check(&history, nemesis.log)
}
