//! A business replica: tails the service's input log and runs every input, strictly in log
//! order, in its worker process; appends each outcome as an OUTPUT to its own output log (RF 1,
//! on the chunkserver beside it), and every `snapshot_every` inputs a snapshot of the state as
//! SNAPSHOT records. On start it rebuilds its worker's state: it restores its newest complete
//! snapshot (covering the first K inputs) and re-runs only the inputs after it, or, without a
//! usable snapshot, re-runs every input; inputs it already has outputs for are not appended
//! again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::{Appender, Client, ReplayEvent, ReplayOptions, TailFrom};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::grouped::GROUP_RECORDS_MAX;
use crate::lost_outputs::{self, OutputLogLost};
use crate::records::{
    CODE_CRASH, CODE_TIMEOUT, ExecRecord, Input, Kind, Output, WorkerRequest, code_name, digest,
    hex, now_ms,
};
use crate::recovery::{OutputLogState, read_output_log, restore_newest};
use crate::service_logs::ServiceLogs;
use crate::snapshot_records::TakenSnapshot;
use crate::snapshot_writer::{PendingSnapshot, write_snapshots};
use crate::supervisor::{Refusal, Worker, WorkerInput};
use crate::verdicts::{Decision, Verdicts};

/// Output appends in flight at most before the replica waits for the oldest ack.
const OUTPUTS_IN_FLIGHT_MAX: usize = 4096;
/// Requests sent to the worker and not yet answered, at most (they run one at a time; the
/// pipeline only saves a round trip per request).
const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// Re-executions of an input this replica's worker crashed or timed out on while f+1 others
/// executed it, before the replica declares itself faulty (each with twice the deadline of the
/// one before).
pub const REEXECUTIONS_MAX: u32 = 3;

/// A replica's default `--snapshot-every`: a snapshot after every 10,000 inputs.
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 10_000;

/// What a replica needs.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The master's address.
    pub master: String,
    /// The service's logs.
    pub logs: ServiceLogs,
    /// This replica's index, 0..n.
    pub index: u32,
    /// The chunkserver beside it (its output log's placement); `None`: the one
    /// `exec create` chose (or the `index`-th live chunkserver in address order).
    pub chunkserver: Option<String>,
    /// The worker: this program re-launched with these arguments.
    pub worker_program: PathBuf,
    /// Arguments that make `worker_program` a worker.
    pub worker_args: Vec<String>,
    /// Take a snapshot after every this many inputs (K a multiple of it); 0: never.
    pub snapshot_every: u64,
    /// Dissents in a row after which the replica reports itself faulty and rebuilds its state.
    pub faulty_after: u64,
    /// Test only (feature `test-faults`): the share of its outputs this replica corrupts.
    pub test_corrupt_outputs: f64,
    /// Where it counts its executions and worker starts.
    pub metrics: crate::metrics::ReplicaMetrics,
}

/// The snapshot the input log is to agree with: it covers the first `inputs` inputs, the last
/// of them `last_request_id`.
#[derive(Clone, Debug)]
struct Skip {
    inputs: u64,
    last_request_id: Bytes,
}

/// The input log does not agree with the restored snapshot: start again re-running every input.
#[derive(Debug)]
struct SnapshotMismatch(String);

impl std::fmt::Display for SnapshotMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotMismatch {}

/// The worker crashed or ran past the deadline on an input, or a re-execution of an input gave
/// a digest other than the agreed one: the worker is gone (killed), and the replica decides
/// what to do from the vote on that input.
#[derive(Debug)]
struct WorkerFault {
    request_id: Bytes,
    /// CODE_CRASH or CODE_TIMEOUT; 0 for a re-execution that disagreed.
    code: u32,
    detail: String,
    duration: Duration,
}

impl std::fmt::Display for WorkerFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request {}: {} ({})",
            hex(&self.request_id),
            code_name(self.code),
            self.detail
        )
    }
}

impl std::error::Error for WorkerFault {}

/// The vote disagreed with this many of the replica's latest outputs in a row (at least its
/// `faulty_after`): it rebuilds its state.
#[derive(Debug)]
struct Faulty(u64);

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} dissents in a row", self.0)
    }
}

impl std::error::Error for Faulty {}

/// This replica answered (applied) inputs that f+1 others then crashed or timed out on, so
/// they are quarantined: its state must be rebuilt without them.
#[derive(Debug)]
struct Diverged(Vec<Bytes>);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.0.iter().map(|id| hex(id)).collect();
        write!(f, "applied quarantined requests {}", ids.join(", "))
    }
}

impl std::error::Error for Diverged {}

/// A faulty replica rebuilds its state at most this often.
const REBUILD_INTERVAL_MIN: Duration = Duration::from_secs(60);
/// Between rebuilds, a replica still faulty says so at most this often.
const FAULTY_REPORT_EVERY: Duration = Duration::from_secs(10);

/// A replica's default `--faulty-after`: dissents in a row that make it faulty.
pub const FAULTY_AFTER_DEFAULT: u64 = 3;

/// An input this replica's worker failed on and f+1 others executed: it is re-executed with a
/// longer deadline until it gives the agreed digest.
#[derive(Clone, Copy, Debug)]
struct Retry {
    attempt: u32,
    agreed: [u8; 32],
}

/// Runs replica `config.index` until `shutdown` resolves or an error stops it (the worker
/// process died, an output could not be appended): the caller restarts it, and it resumes
/// after its last output.
pub async fn run(config: ReplicaConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let client = Client::connect(&config.master)
        .await
        .context("connect to the master")?;
    let output_log = config.logs.output(config.index);
    let beside = config
        .logs
        .create_output(&client, config.index, config.chunkserver.as_deref())
        .await?;
    let mut state = load_output_log(&client, &config, &beside).await?;
    let mut appender = Arc::new(client.appender(&output_log).await?);
    let verdicts = Verdicts::start(&client, &config.logs).await?;
    let mut retries: HashMap<Bytes, Retry> = HashMap::new();
    let mut rebuilt_at: Option<Instant> = None;
    tokio::pin!(shutdown);
    let mut use_snapshot = true;
    let result = loop {
        let args: Vec<&str> = config.worker_args.iter().map(String::as_str).collect();
        let mut worker = Worker::spawn_with_env(
            &config.worker_program,
            &args,
            &crate::test_faults::worker_env(config.index),
        )
        .context("start the worker")?;
        config.metrics.worker_started();
        let skip = if use_snapshot {
            match restore_newest(&mut worker, &state).await {
                Ok(0) => None,
                Ok(inputs) => state.newest_snapshot.as_ref().map(|s| Skip {
                    inputs,
                    last_request_id: s.last_request_id.clone(),
                }),
                Err(e) => {
                    warn!(
                        replica = config.index,
                        error = %e,
                        "the snapshot did not restore; re-running every input in a fresh worker"
                    );
                    use_snapshot = false;
                    continue;
                }
            }
        } else {
            None
        };
        let done_count = state.done.len() as u64;
        let covered = skip.as_ref().map_or(0, |s| s.inputs);
        info!(
            replica = config.index,
            chunkserver = %beside,
            path = if skip.is_some() { "snapshot" } else { "full" },
            restored = covered,
            rerun = done_count.saturating_sub(covered),
            "replica starting: state from {}, re-running {} inputs that have outputs",
            if skip.is_some() {
                format!("a snapshot of the first {covered} inputs")
            } else {
                "no snapshot".to_owned()
            },
            done_count.saturating_sub(covered)
        );
        let run = execute(
            &client,
            &config,
            (&state, &appender, &beside),
            worker,
            skip,
            (&verdicts, &retries, rebuilt_at),
            &mut shutdown,
        );
        match run.await {
            Err(e) if e.downcast_ref::<Diverged>().is_some() => {
                // Its state holds an input no replica may apply: rebuild without it, from the
                // input log alone (its snapshots since then hold it too).
                warn!(replica = config.index, reason = %e, "rebuilding the state without a quarantined input this replica applied");
                use_snapshot = false;
                match load_output_log(&client, &config, &beside).await {
                    Ok(now) => state = now,
                    Err(e) => break Err(e),
                }
            }
            Err(e) if e.downcast_ref::<Faulty>().is_some() => {
                // Rebuild the state from the input log alone: a snapshot may hold the fault.
                rebuilt_at = Some(Instant::now());
                use_snapshot = false;
                warn!(
                    replica = config.index,
                    "rebuilding the state from the input log in a fresh worker"
                );
                match load_output_log(&client, &config, &beside).await {
                    Ok(now) => state = now,
                    Err(e) => break Err(e),
                }
            }
            Err(e) if e.downcast_ref::<WorkerFault>().is_some() => {
                let fault = e.downcast::<WorkerFault>().expect("just checked");
                if let Err(e) = on_fault(
                    &config,
                    &appender,
                    &verdicts,
                    &mut state,
                    &mut retries,
                    fault,
                )
                .await
                {
                    break Err(e);
                }
                // The outputs and snapshots this worker's run appended count as done.
                match load_output_log(&client, &config, &beside).await {
                    Ok(now) => state = now,
                    Err(e) => break Err(e),
                }
            }
            Err(e) if e.downcast_ref::<OutputLogLost>().is_some() => {
                // The run is over: its clones of the appender are gone.
                let old = Arc::try_unwrap(appender).ok();
                if let Err(e) = remake_output_log(&client, &config, &beside, &e, old).await {
                    break Err(e);
                }
                match client.appender(&output_log).await {
                    Ok(a) => appender = Arc::new(a),
                    Err(e) => break Err(e.into()),
                }
                state = OutputLogState::default();
                use_snapshot = false;
            }
            Err(e) if e.downcast_ref::<SnapshotMismatch>().is_some() => {
                warn!(
                    replica = config.index,
                    reason = %e,
                    "the input log does not agree with the snapshot; re-running every input in a fresh worker"
                );
                use_snapshot = false;
            }
            result => break result,
        }
    };
    if let Err(e) = &result {
        warn!(replica = config.index, error = %format!("{e:#}"), "replica stops");
    }
    result
}

/// Replica `config.index`'s output log as a replay finds it. If the replay fails because chunks
/// of the log are lost for good (its chunkserver `beside` lost its disk), the log is made again,
/// empty: every input will be re-run and its output appended anew.
async fn load_output_log(
    client: &Client,
    config: &ReplicaConfig,
    beside: &str,
) -> anyhow::Result<OutputLogState> {
    let path = config.logs.output(config.index);
    let failed = match read_output_log(client, &path, config.index).await {
        Ok(state) => return Ok(state),
        Err(e) => e,
    };
    let Some(lost) = lost_outputs::lost_chunks(client, &path, beside).await? else {
        return Err(failed);
    };
    remake_output_log(client, config, beside, &lost, None).await?;
    Ok(OutputLogState::default())
}

/// Makes replica `config.index`'s output log again, empty, because of `lost` (closing `old`,
/// the appender of the lost log, if there is one): every input will be re-run and its output
/// appended anew.
async fn remake_output_log(
    client: &Client,
    config: &ReplicaConfig,
    beside: &str,
    lost: &(dyn std::fmt::Display + Sync),
    old: Option<Appender>,
) -> anyhow::Result<()> {
    warn!(replica = config.index, reason = %lost, "rebuilding the output log: deleted, created again, every input re-run and its output appended");
    lost_outputs::recreate(client, &config.logs, config.index, beside, old).await
}

/// What the writer sent the worker, in order, for the reader to match with its answers.
enum Sent {
    /// A call: its request id, the handler's deadline, when it was sent, and for a
    /// re-execution the digest f+1 others agreed on.
    Call {
        request_id: Bytes,
        deadline: Duration,
        sent_at: Instant,
        expect: Option<[u8; 32]>,
    },
    /// A snapshot request after input `inputs`, whose request id is `last_request_id`.
    Snapshot { inputs: u64, last_request_id: Bytes },
}

/// The pipeline of one worker: inputs after `skip` (all of them without one) run in `worker`,
/// outputs appended for those not in `state.done`, snapshots taken after every
/// `config.snapshot_every` inputs beyond the newest one in the log. Ends with `shutdown` or an
/// error; a [`SnapshotMismatch`] if the input log does not agree with `skip`.
async fn execute(
    client: &Client,
    config: &ReplicaConfig,
    (state, appender, beside): (&OutputLogState, &Arc<Appender>, &str),
    worker: Worker,
    skip: Option<Skip>,
    (verdicts, retries, rebuilt_at): (&Verdicts, &HashMap<Bytes, Retry>, Option<Instant>),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let index = config.index;
    let done = &state.done;
    let covered = skip.as_ref().map_or(0, |s| s.inputs);
    // Snapshots are taken only beyond the newest one in the log.
    let floor = state.newest_snapshot.as_ref().map_or(0, |s| s.inputs);
    let every = config.snapshot_every;
    let due = move |number: u64| every > 0 && number.is_multiple_of(every) && number > floor;
    let (mut to_worker, mut from_worker, mut process) = worker.split();
    let (acks_tx, mut acks_rx) = mpsc::channel::<PendingAck>(OUTPUTS_IN_FLIGHT_MAX);
    let acks = async move {
        while let Some(ack) = acks_rx.recv().await {
            ack.await.context("append an output")?;
        }
        anyhow::Ok(())
    };
    let mut inputs = client
        .tail(
            &config.logs.inputs(),
            TailFrom::Start,
            ReplayOptions::default(),
        )
        .await?;
    // Inputs in log order, first copies only, numbered from 1: tail → writer → worker → reader.
    let (input_tx, mut input_rx) = mpsc::channel::<(u64, Input)>(REQUESTS_IN_FLIGHT_MAX);
    let (sent_tx, mut sent_rx) = mpsc::channel::<Sent>(REQUESTS_IN_FLIGHT_MAX);
    let follow = async move {
        let mut seen: HashSet<Bytes> = HashSet::new();
        let mut number: u64 = 0;
        loop {
            let event = inputs.next().await.context("the input log ended")??;
            let payload = match event {
                ReplayEvent::Record { payload, .. } => payload,
                ReplayEvent::Skipped {
                    chunk,
                    offset,
                    len,
                    reason,
                } => {
                    warn!(chunk, %offset, len, %reason, "input log bytes skipped");
                    continue;
                }
                // A kind of event newer than this code: it carries no input.
                other => {
                    warn!(event = ?other, "an unknown replay event on the input log; ignored");
                    continue;
                }
            };
            let Some(Kind::Input(input)) = ExecRecord::from_payload(&payload) else {
                warn!("a record of the input log is not an INPUT; ignored");
                continue;
            };
            if !seen.insert(input.request_id.clone()) {
                continue;
            }
            number += 1;
            let quarantined = verdicts.is_quarantined(&input.request_id);
            if let Some(skip) = &skip
                && number <= skip.inputs
            {
                if !quarantined {
                    check_covered(skip, number, &input.request_id, done)?;
                }
                continue;
            }
            if quarantined {
                // f+1 replicas crashed or timed out on it: its effects are never applied.
                info!(replica = index, request = %hex(&input.request_id), "quarantined input skipped");
                continue;
            }
            if input_tx.send((number, input)).await.is_err() {
                return anyhow::Ok(());
            }
        }
    };
    // Requests go to the worker in batches: whatever is ready, then one flush. A snapshot
    // request follows the input it comes after.
    let supported = Arc::new(AtomicBool::new(true));
    let asks = supported.clone();
    let write = async move {
        while let Some(first) = input_rx.recv().await {
            let mut next = Some(first);
            while let Some((number, input)) = next {
                let retry = retries.get(&input.request_id).copied();
                let deadline = handler_deadline(&input, retry);
                let call = Sent::Call {
                    request_id: input.request_id.clone(),
                    deadline,
                    sent_at: Instant::now(),
                    expect: retry.map(|r| r.agreed),
                };
                if !note_sent(&sent_tx, &mut to_worker, call).await? {
                    return anyhow::Ok(());
                }
                to_worker
                    .send(&worker_request(&input))
                    .await
                    .context("the worker process failed")?;
                if due(number) && asks.load(Ordering::Relaxed) {
                    let sent = Sent::Snapshot {
                        inputs: number,
                        last_request_id: input.request_id.clone(),
                    };
                    if !note_sent(&sent_tx, &mut to_worker, sent).await? {
                        return anyhow::Ok(());
                    }
                    to_worker
                        .send_snapshot_request()
                        .await
                        .context("the worker process failed")?;
                }
                next = input_rx.try_recv().ok();
            }
            to_worker
                .flush()
                .await
                .context("the worker process failed")?;
        }
        anyhow::Ok(())
    };
    // The newest snapshot not yet written: one taken while another is written replaces any
    // older one still waiting (so at most two are held, and the newest is always written).
    let pending = Arc::new(PendingSnapshot::default());
    let write_snapshots = write_snapshots(appender.clone(), pending.clone());
    let corrupt_rate = config.test_corrupt_outputs;
    if corrupt_rate > 0.0 {
        warn!(
            replica = index,
            rate = corrupt_rate,
            "test fault: this replica corrupts a share of its outputs"
        );
    }
    let rerun_expected = (done.len() as u64).saturating_sub(covered);
    let appender = appender.clone();
    let metrics = config.metrics.clone();
    let read = async move {
        let mut executed: u64 = covered;
        let mut rerun: u64 = 0;
        // Outputs of the replies that arrived together, appended together (one batch).
        let mut outputs: Vec<Bytes> = Vec::new();
        // The worker runs one request at a time: the next one starts when the one before it
        // has answered (or when it is sent, if the worker was idle).
        let mut last_answer = Instant::now();
        while let Some(sent) = sent_rx.recv().await {
            match sent {
                Sent::Call {
                    request_id,
                    deadline,
                    sent_at,
                    expect,
                } => {
                    let started = sent_at.max(last_answer);
                    let answer = tokio::time::timeout_at(
                        (started + deadline).into(),
                        from_worker.next_reply(),
                    )
                    .await;
                    last_answer = Instant::now();
                    let duration = last_answer.saturating_duration_since(started);
                    let mut reply = match answer {
                        Ok(Ok(reply)) => {
                            metrics.executed(reply.code, duration);
                            reply
                        }
                        Ok(Err(e)) => {
                            let ended = process.ended(Duration::from_millis(500)).await;
                            return Err(WorkerFault {
                                request_id,
                                code: CODE_CRASH,
                                detail: format!("{ended} ({e})"),
                                duration,
                            }
                            .into());
                        }
                        Err(_) => {
                            // A runaway handler: SIGKILL its worker.
                            if let Err(e) = process.kill().await {
                                warn!(replica = index, error = %e, "killing the worker failed");
                            }
                            return Err(WorkerFault {
                                request_id,
                                code: CODE_TIMEOUT,
                                detail: format!("killed after {} ms", deadline.as_millis()),
                                duration,
                            }
                            .into());
                        }
                    };
                    if crate::test_faults::corrupts(corrupt_rate, &request_id) {
                        crate::test_faults::make_wrong(&mut reply);
                    }
                    if let Some(agreed) = expect {
                        if reply.digest() != agreed {
                            return Err(WorkerFault {
                                request_id,
                                code: 0,
                                detail: format!(
                                    "re-executed, its outcome {} differs from the agreed one",
                                    code_name(reply.code)
                                ),
                                duration,
                            }
                            .into());
                        }
                        info!(replica = index, request = %hex(&request_id), "re-executed an input this replica had failed on: it now gives the agreed outcome");
                        outputs.push(output_record(index, &request_id, reply.clone(), duration));
                    }
                    executed += 1;
                    if executed.is_multiple_of(10_000) {
                        info!(replica = index, executed, "inputs executed");
                    }
                    if done.contains(&request_id) {
                        rerun += 1;
                        if rerun == rerun_expected {
                            info!(replica = index, rerun, executed, "state rebuilt");
                        }
                    } else {
                        verdicts.note_output(request_id.clone(), reply.digest());
                        outputs.push(output_record(index, &request_id, reply, duration));
                    }
                }
                Sent::Snapshot {
                    inputs,
                    last_request_id,
                } => {
                    let snapshot = from_worker
                        .next_snapshot()
                        .await
                        .context("the worker process failed")?;
                    last_answer = Instant::now();
                    match snapshot {
                        Ok(bytes) => {
                            // The outputs of inputs 1..K go to the log before the snapshot.
                            if !append_outputs(&appender, &mut outputs, &acks_tx).await {
                                return anyhow::Ok(());
                            }
                            let taken = TakenSnapshot {
                                replica: index,
                                inputs,
                                last_request_id,
                                bytes,
                            };
                            if let Some(older) = pending.put(taken) {
                                debug!(
                                    replica = index,
                                    inputs = older.inputs,
                                    "a snapshot not yet written is superseded by a newer one"
                                );
                            }
                        }
                        Err(Refusal::Unsupported) => {
                            if supported.swap(false, Ordering::Relaxed) {
                                info!(
                                    replica = index,
                                    "the service has no snapshots: none are taken, a restart re-runs every input"
                                );
                            }
                        }
                        Err(refusal) => {
                            warn!(replica = index, inputs, %refusal, "the worker took no snapshot")
                        }
                    }
                }
            }
            if from_worker.reply_buffered() && outputs.len() < GROUP_RECORDS_MAX {
                continue;
            }
            if !append_outputs(&appender, &mut outputs, &acks_tx).await {
                return anyhow::Ok(());
            }
        }
        anyhow::Ok(())
    };
    if rerun_expected == 0 {
        info!(
            replica = index,
            rerun = 0,
            executed = covered,
            "state rebuilt"
        );
    }
    // K dissents in a row: the replica reports itself faulty and rebuilds its state (at most
    // once per REBUILD_INTERVAL_MIN; a fault that a rebuild does not cure goes on dissenting,
    // outvoted, and is reported each time).
    let faulty = async {
        let mut reported: Option<Instant> = None;
        loop {
            let k = config.faulty_after.max(1);
            let n = verdicts.dissented_in_a_row(k).await;
            let rebuild = rebuilt_at.is_none_or(|at| at.elapsed() >= REBUILD_INTERVAL_MIN);
            if rebuild || reported.is_none_or(|at| at.elapsed() >= FAULTY_REPORT_EVERY) {
                reported = Some(Instant::now());
                error!(
                    replica = index,
                    dissents_in_a_row = n,
                    rebuild,
                    "replica is faulty: the vote disagreed with its latest outputs"
                );
            }
            if rebuild {
                return Err(anyhow::Error::new(Faulty(n)));
            }
        }
    };
    let output_log = config.logs.output(index);
    tokio::select! {
        r = follow => r,
        r = write => r,
        r = read => r,
        r = acks => r.and_then(|()| Err(anyhow::anyhow!("acks ended"))),
        r = write_snapshots => r,
        r = faulty => r,
        applied = verdicts.applied_a_quarantined_input() => Err(anyhow::Error::new(Diverged(applied))),
        lost = lost_outputs::watch(client, &output_log, beside) => Err(anyhow::Error::new(lost)),
        _ = shutdown => Ok(()),
    }
}

/// Appends `outputs` (all together) and hands their acks to the checker; `false`: it is gone.
async fn append_outputs(
    appender: &Appender,
    outputs: &mut Vec<Bytes>,
    acks_tx: &mpsc::Sender<PendingAck>,
) -> bool {
    for ack in appender.append_all(outputs.drain(..)) {
        if acks_tx.send(ack.await_ack()).await.is_err() {
            return false;
        }
    }
    true
}

/// Hands `sent` to the reader. When the reader is [`REQUESTS_IN_FLIGHT_MAX`] answers behind,
/// the requests queued for the worker are flushed before waiting: the reader waits for their
/// answers, so waiting with them unsent would stall both (a replica replaying a backlog of
/// more than that many small inputs did). `false`: the reader is gone.
async fn note_sent(
    sent_tx: &mpsc::Sender<Sent>,
    to_worker: &mut WorkerInput,
    sent: Sent,
) -> anyhow::Result<bool> {
    let permit = match sent_tx.try_reserve() {
        Ok(permit) => permit,
        Err(mpsc::error::TrySendError::Full(())) => {
            to_worker
                .flush()
                .await
                .context("the worker process failed")?;
            match sent_tx.reserve().await {
                Ok(permit) => permit,
                Err(_) => return Ok(false),
            }
        }
        Err(mpsc::error::TrySendError::Closed(())) => return Ok(false),
    };
    permit.send(sent);
    Ok(true)
}

/// Checks input `number` (`request_id`), covered by the restored snapshot: it has an output
/// (the snapshot skips it, so none would be appended), and input K is the snapshot's own.
fn check_covered(
    skip: &Skip,
    number: u64,
    request_id: &Bytes,
    done: &HashSet<Bytes>,
) -> Result<(), SnapshotMismatch> {
    if !done.contains(request_id) {
        return Err(SnapshotMismatch(format!(
            "input {number} (request {}) is covered by the snapshot of {} inputs but has no output",
            hex(request_id),
            skip.inputs
        )));
    }
    if number == skip.inputs && *request_id != skip.last_request_id {
        return Err(SnapshotMismatch(format!(
            "input {number} is request {}, the snapshot names request {}",
            hex(request_id),
            hex(&skip.last_request_id)
        )));
    }
    Ok(())
}

/// An output's acknowledgement, waiting in the channel to be checked.
type PendingAck = std::pin::Pin<Box<dyn Future<Output = cairn_client::Result<()>> + Send>>;

/// A boxed ack, so it can wait in the channel.
trait AwaitAck {
    fn await_ack(self) -> PendingAck;
}

impl<F> AwaitAck for F
where
    F: Future<Output = cairn_client::Result<cairn_client::AppendAck>> + Send + 'static,
{
    fn await_ack(self) -> PendingAck {
        Box::pin(async move { self.await.map(drop) })
    }
}

/// The OUTPUT record of `reply` to `request_id`.
fn output_record(
    replica: u32,
    request_id: &Bytes,
    reply: crate::records::WorkerReply,
    duration: Duration,
) -> Bytes {
    let output = Output {
        request_id: request_id.clone(),
        replica,
        code: reply.code,
        message: reply.message.clone(),
        digest: Bytes::copy_from_slice(&reply.digest()),
        response: reply.response,
        detail: String::new(),
        duration_us: duration.as_micros() as u64,
        at_ms: now_ms(),
    };
    ExecRecord::from(Kind::Output(output)).to_payload()
}

/// The deadline a handler of `input` gets: the INPUT's (the service default if it has none),
/// doubled for each earlier re-execution.
fn handler_deadline(input: &Input, retry: Option<Retry>) -> Duration {
    let base = match input.deadline_ms {
        0 => crate::deadline::DEFAULT_DEADLINE,
        ms => Duration::from_millis(u64::from(ms)),
    };
    base * 2u32
        .saturating_pow(retry.map_or(0, |r| r.attempt))
        .min(1 << 10)
}

/// The worker failed on an input (`fault`): its CRASH or TIMEOUT is appended as this replica's
/// OUTPUT (unless it has one), and the vote on the input decides what follows, in a fresh
/// worker: quarantined, it is skipped (its effects never applied); executed by f+1 others, it
/// is re-executed with a longer deadline until it gives their digest, at most
/// [`REEXECUTIONS_MAX`] times, after which the replica declares itself faulty (an error: its
/// caller restarts it, rebuilding the state from the start).
async fn on_fault(
    config: &ReplicaConfig,
    appender: &Appender,
    verdicts: &Verdicts,
    state: &mut OutputLogState,
    retries: &mut HashMap<Bytes, Retry>,
    fault: WorkerFault,
) -> anyhow::Result<()> {
    let index = config.index;
    let WorkerFault {
        request_id,
        code,
        detail,
        duration,
    } = fault;
    if code != 0 {
        config.metrics.executed(code, duration);
    }
    warn!(replica = index, request = %hex(&request_id), outcome = %code_name(code), %detail, "the worker failed on an input; a fresh worker follows");
    if code != 0 && !state.done.contains(&request_id) {
        let output = Output {
            request_id: request_id.clone(),
            replica: index,
            code,
            message: String::new(),
            digest: Bytes::copy_from_slice(&digest(code, "", b"")),
            response: Bytes::new(),
            detail: detail.clone(),
            duration_us: duration.as_micros() as u64,
            at_ms: now_ms(),
        };
        appender
            .append(ExecRecord::from(Kind::Output(output)).to_payload())
            .await
            .context("append the worker's failure as an output")?;
        state.done.insert(request_id.clone());
    }
    match verdicts.decision(&request_id).await? {
        Decision::Quarantined => {
            info!(replica = index, request = %hex(&request_id), "the input is quarantined: skipped from now on");
            retries.remove(&request_id);
        }
        Decision::Agreed(agreed) => {
            let attempt = retries.get(&request_id).map_or(0, |r| r.attempt) + 1;
            if attempt > REEXECUTIONS_MAX {
                anyhow::bail!(
                    "replica {index} is faulty: request {} failed {attempt} times here ({detail}) \
                     while f+1 replicas executed it; it rebuilds its state from the start",
                    hex(&request_id)
                );
            }
            warn!(replica = index, request = %hex(&request_id), attempt, "f+1 replicas executed an input this replica failed on: re-executing it with a longer deadline");
            retries.insert(request_id, Retry { attempt, agreed });
        }
    }
    Ok(())
}

/// The worker's request for `input`.
pub fn worker_request(input: &Input) -> WorkerRequest {
    WorkerRequest {
        request_id: input.request_id.clone(),
        method: input.method.clone(),
        message: input.message.clone(),
        seed: input.seed,
        logical_time_ms: input.received_at_ms,
        ..WorkerRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: an input the restored snapshot covers must have an output, and input K must be
    // the request the snapshot names; otherwise the snapshot is not used.
    #[test]
    fn covered_inputs_must_agree_with_the_snapshot() {
        let id = |b: u8| Bytes::from(vec![b; 16]);
        let skip = Skip {
            inputs: 3,
            last_request_id: id(3),
        };
        let done: HashSet<Bytes> = [id(1), id(2), id(3), id(9)].into_iter().collect();
        assert!(check_covered(&skip, 1, &id(1), &done).is_ok());
        assert!(check_covered(&skip, 3, &id(3), &done).is_ok());
        let other = check_covered(&skip, 3, &id(9), &done).unwrap_err();
        assert!(other.0.contains("the snapshot names"), "{other}");
        let missing = check_covered(&skip, 2, &id(4), &done).unwrap_err();
        assert!(missing.0.contains("has no output"), "{missing}");
    }
}
