//! The clients' work, on two client hosts. The writer host creates the log and runs the
//! appenders (pipelined bursts) and one resumed writer (it "restarts" halfway and resumes its
//! writer id from its first unacknowledged sequence, while its older incarnation may still be
//! sending); after healing it replays the log and waits for the replicas to converge. The reader
//! host replays the log again and again while the faults are active and keeps a tail running.
//! Both record what they saw in the shared [`History`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_chunkserver::FaultyDisk;
use cairn_client::{
    Appender, ChunkState, Client, LogOptions, ReplayEvent, ReplayOptions, TailFrom,
};
use cairn_record::{SplitMix64, WriterId};
use tokio::task::JoinHandle;

use crate::check::{Acked, History, Key, Read, payload};
use crate::net::SimConnector;
use crate::{CHUNKSERVER_PORT, LOG, MASTER, SimConfig};

/// What the client hosts share with each other and with the run.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) history: Arc<Mutex<History>>,
    /// Every chunkserver's disk, to compare replicas after healing.
    pub(crate) disks: Vec<FaultyDisk>,
    /// Every chunkserver's data directory (the paths of its files on its disk).
    pub(crate) data_dirs: Vec<PathBuf>,
    /// Set by the writer host once its final replay is done: the reader's tail then has a
    /// bounded time to return every acknowledged record.
    pub(crate) final_done: Arc<Mutex<bool>>,
}

impl Shared {
    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().expect("history lock")
    }

    /// `message` without the run's temporary directory (errors may name files in it), so that
    /// two runs of one seed record the same history.
    fn without_run_dir(&self, message: &str) -> String {
        match self.data_dirs.first().and_then(|d| d.parent()) {
            Some(root) => message.replace(&*root.to_string_lossy(), "<run>"),
            None => message.to_owned(),
        }
    }
}

/// Simulated time since the start of the run.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Sleeps until `at` simulated time (no-op if already past).
async fn sleep_until(at: Duration) {
    let now = now();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}

/// Retries `f` every 200 ms of simulated time for up to 60 s.
pub(crate) async fn retry<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    mut f: F,
) -> Result<T, String>
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

async fn connect() -> Result<Client, String> {
    retry("connect", || {
        Client::with_connector(MASTER, Arc::new(SimConnector))
    })
    .await
}

/// Sends records `seqs` of writer `w`, a burst of 5 every 100 ms, each answer recorded by its own
/// task the moment it arrives.
async fn send(
    shared: &Shared,
    appender: &Appender,
    w: usize,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<JoinHandle<()>> {
    let mut answers = Vec::new();
    for s in seqs {
        shared.history().attempted.insert((w, s));
        let ack = appender.append(payload(appender.writer_id(), w, s));
        let shared = shared.clone();
        answers.push(tokio::spawn(async move {
            let result = ack.await;
            let mut h = shared.history();
            match result {
                Ok(a) if a.id.sequence == s => {
                    let place = a.chunk.zip(a.offset.map(u64::from));
                    h.acked.entry((w, s)).or_insert(Acked { at: now(), place });
                }
                Ok(a) => h.unexpected.push(format!(
                    "writer {w}: sequence {s} acknowledged as sequence {}",
                    a.id.sequence
                )),
                Err(_) => h.failed += 1,
            }
        }));
        if s % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    answers
}

/// Waits for every answer until `deadline`; what is still unanswered then counts against
/// liveness.
async fn await_answers(shared: &Shared, answers: Vec<JoinHandle<()>>, deadline: Duration) {
    for a in answers {
        let left = deadline.saturating_sub(now());
        if tokio::time::timeout(left, a).await.is_err() {
            shared.history().unanswered += 1;
        }
    }
}

/// One appender: all its records, then close.
async fn appender_run(shared: Shared, client: Client, w: usize) -> Result<(), String> {
    let appender = retry("open an appender", || client.appender(LOG)).await?;
    shared.history().writers.insert(appender.writer_id(), w);
    let answers = send(&shared, &appender, w, 1..=shared.config.records as u64).await;
    await_answers(&shared, answers, shared.config.liveness_deadline()).await;
    let _ = appender.close().await;
    Ok(())
}

/// The resumed writer: an application-chosen writer id; halfway it "restarts" (a new client,
/// the old appender dropped with records in flight and their answers unheard) and resumes from
/// the first sequence it did not see acknowledged, sending those records again.
async fn resumed_writer_run(shared: Shared, w: usize, seed: u64) -> Result<(), String> {
    let writer = WriterId((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1) & !(1 << 63));
    shared.history().writers.insert(writer, w);
    let records = shared.config.records as u64;
    let half = records / 2;
    let client = connect().await?;
    let first = retry("resume the writer", || {
        client.resume_appender(LOG, writer, 1)
    })
    .await?;
    let answers = send(&shared, &first, w, 1..=half).await;
    tokio::time::sleep(Duration::from_millis(SplitMix64::new(seed).below(300))).await;
    for a in &answers {
        a.abort();
    }
    drop(first);
    let acked_prefix = {
        let h = shared.history();
        (1..=half)
            .take_while(|s| h.acked.contains_key(&(w, *s)))
            .count() as u64
    };
    let client = connect().await?;
    let resume_at = acked_prefix + 1;
    let second = retry("resume the writer again", || {
        client.resume_appender(LOG, writer, resume_at)
    })
    .await?;
    let answers = send(&shared, &second, w, resume_at..=records).await;
    await_answers(&shared, answers, shared.config.liveness_deadline()).await;
    let _ = second.close().await;
    Ok(())
}

/// One whole replay, each record classified.
async fn replay_once(shared: &Shared, client: &Client) -> Result<Vec<Key>, String> {
    let mut replay = client
        .replay(LOG, ReplayOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    while let Some(event) = replay.next().await {
        match event.map_err(|e| e.to_string())? {
            ReplayEvent::Record { id, payload, .. } => {
                if let Some(k) = shared.history().classify(id.writer, id.sequence, &payload) {
                    keys.push(k);
                }
            }
            ReplayEvent::Skipped {
                chunk,
                offset,
                len,
                reason,
            } => {
                tracing::warn!(%chunk, %offset, len, %reason, "replay skipped a range");
                shared.history().skipped += 1;
            }
            // The checker must be taught any new kind of event before it can judge a run.
            other => {
                return Err(format!(
                    "a replay event the checker does not know: {other:?}"
                ));
            }
        }
    }
    Ok(keys)
}

/// The writer host: create the log, run every writer, then (after healing) the final replay and
/// the convergence check.
pub(crate) async fn writer_host(shared: Shared) -> Result<(), String> {
    let config = shared.config;
    let client = connect().await?;
    client.seed_writer_ids(config.seed ^ 0x5151_5151);
    let options = LogOptions::default()
        .with_replication(3)
        .with_min_replicas(0)
        .with_chunk_bytes(16 << 10);
    retry("create the log", || async {
        match client.create_log(LOG, options.clone()).await {
            Err(cairn_client::Error::LogExists { .. }) => Ok(()),
            other => other.map(drop),
        }
    })
    .await?;
    let mut tasks = Vec::new();
    for w in 0..config.appenders {
        tasks.push(tokio::spawn(appender_run(
            shared.clone(),
            client.clone(),
            w,
        )));
    }
    if config.resumed_writer {
        let w = config.appenders;
        tasks.push(tokio::spawn(resumed_writer_run(
            shared.clone(),
            w,
            config.seed ^ 0x7e57,
        )));
    }
    for (w, t) in tasks.into_iter().enumerate() {
        t.await.map_err(|e| format!("writer {w}: {e}"))??;
    }
    sleep_until(config.heal_at() + Duration::from_secs(5)).await;
    let replayed = retry("final replay", || replay_once(&shared, &client)).await?;
    shared.history().replayed = replayed;
    converge(&shared, &client).await;
    *shared.final_done.lock().expect("flag lock") = true;
    Ok(())
}

/// Waits up to 60 s for every sealed chunk to have its full replica count with identical bytes
/// (read straight from the chunkservers' disks); records what never converged.
async fn converge(shared: &Shared, client: &Client) {
    let mut problems = Vec::new();
    for _ in 0..60 {
        problems = match client.stat_log(LOG).await {
            Ok(stat) => replica_differences(shared, &stat),
            Err(e) => vec![format!("stat: {e}")],
        };
        if problems.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    shared.history().convergence = problems;
}

fn replica_differences(shared: &Shared, stat: &cairn_client::LogStat) -> Vec<String> {
    let mut problems = Vec::new();
    for c in &stat.chunks {
        if c.state != ChunkState::Sealed {
            continue;
        }
        if c.replicas.len() != stat.replication as usize {
            problems.push(format!(
                "chunk {} has {} replicas: {:?}",
                c.index,
                c.replicas.len(),
                c.replicas
            ));
            continue;
        }
        let mut copies = BTreeMap::new();
        for r in &c.replicas {
            let i = r
                .strip_prefix("cs")
                .and_then(|r| r.strip_suffix(&format!(":{CHUNKSERVER_PORT}")))
                .and_then(|i| i.parse::<usize>().ok())
                .expect("chunkserver addresses are csN:PORT");
            let path = shared.data_dirs[i]
                .join("chunks")
                .join(format!("{}.chunk", c.handle));
            let bytes = shared.disks[i].contents(&path).map(|mut b| {
                b.truncate(c.length.0 as usize);
                b
            });
            copies.insert(r.clone(), bytes);
        }
        let distinct: BTreeSet<_> = copies.values().collect();
        if distinct.len() != 1
            || copies
                .values()
                .any(|b| b.as_ref().map(Vec::len) != Some(c.length.0 as usize))
        {
            problems.push(format!(
                "chunk {} (sealed at {}): replicas differ: {:?}",
                c.index,
                c.length,
                copies
                    .iter()
                    .map(|(r, b)| (r, b.as_ref().map(|b| (b.len(), crc(b)))))
                    .collect::<Vec<_>>()
            ));
        }
    }
    problems
}

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// The reader host: replays while the faults are active, and a tail from the start kept running
/// (restarted if it fails) until it has returned every acknowledged record after healing.
pub(crate) async fn reader_host(shared: Shared) -> Result<(), String> {
    let config = shared.config;
    let client = connect().await?;
    let tail = tokio::spawn(tail_run(shared.clone(), client.clone()));
    let mut rng = SplitMix64::new(config.seed ^ 0x4ead);
    while now() < config.heal_at() + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(800))).await;
        let acked_before: BTreeSet<Key> = shared.history().acked.keys().copied().collect();
        let started = now();
        let result = match tokio::time::timeout(
            Duration::from_secs(10),
            replay_once(&shared, &client),
        )
        .await
        {
            Ok(r) => r.map_err(|e| shared.without_run_dir(&e)),
            Err(_) => Err("timed out after 10 s".to_owned()),
        };
        shared.history().reads.push(Read {
            started,
            ended: now(),
            acked_before,
            result,
        });
    }
    // The tail gets until 30 s after the writer host's final replay.
    while !*shared.final_done.lock().expect("flag lock") {
        if now() > config.liveness_deadline() + Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = now() + Duration::from_secs(30);
    loop {
        let missing: Vec<Key> = {
            let h = shared.history();
            let tailed: BTreeSet<&Key> = h.tail.iter().collect();
            h.acked
                .keys()
                .filter(|k| !tailed.contains(k))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if now() >= deadline {
            shared.history().tail_missing = missing;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tail.abort();
    Ok(())
}

/// A tail from the log's start; on an error it starts over (a new reader, a fresh list).
async fn tail_run(shared: Shared, client: Client) {
    loop {
        let mut tail = match client
            .tail(LOG, TailFrom::Start, ReplayOptions::default())
            .await
        {
            Ok(t) => t,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        shared.history().tail.clear();
        while let Some(event) = tail.next().await {
            match event {
                Ok(ReplayEvent::Record { id, payload, .. }) => {
                    let mut h = shared.history();
                    if let Some(k) = h.classify(id.writer, id.sequence, &payload) {
                        h.tail.push(k);
                    }
                }
                Ok(ReplayEvent::Skipped { .. }) => shared.history().skipped += 1,
                Ok(other) => panic!("a tail event the checker does not know: {other:?}"),
                Err(_) => break,
            }
        }
        shared.history().tail_restarts += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
