//! A business replica: tails the service's input log and runs every input, strictly in log
//! order, in its worker process; appends each outcome as an OUTPUT to its own output log (RF 1,
//! on the chunkserver beside it). On start it rebuilds its worker's state by re-running the
//! inputs it already has outputs for, without appending them again.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions, TailFrom};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::grouped::GROUP_RECORDS_MAX;
use crate::records::{ExecRecord, Input, Kind, Output, WorkerRequest};
use crate::service_logs::ServiceLogs;
use crate::supervisor::Worker;

/// Output appends in flight at most before the replica waits for the oldest ack.
const OUTPUTS_IN_FLIGHT_MAX: usize = 4096;
/// Requests sent to the worker and not yet answered, at most (they run one at a time; the
/// pipeline only saves a round trip per request).
const REQUESTS_IN_FLIGHT_MAX: usize = 256;

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
    let done = outputs_done(&client, &output_log).await?;
    info!(
        replica = config.index,
        chunkserver = %beside,
        rebuild = done.len(),
        "replica starting"
    );
    let args: Vec<&str> = config.worker_args.iter().map(String::as_str).collect();
    let worker = Worker::spawn(&config.worker_program, &args).context("start the worker")?;
    let (mut to_worker, mut from_worker, _process) = worker.split();
    let appender = client.appender(&output_log).await?;
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
    // Inputs in log order, first copies only: tail → writer → worker → reader.
    let (input_tx, mut input_rx) = mpsc::channel::<Input>(REQUESTS_IN_FLIGHT_MAX);
    let (sent_tx, mut sent_rx) = mpsc::channel::<Bytes>(REQUESTS_IN_FLIGHT_MAX);
    let follow = async move {
        let mut seen: HashSet<Bytes> = HashSet::new();
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
            };
            let Some(Kind::Input(input)) = ExecRecord::from_payload(&payload) else {
                warn!("a record of the input log is not an INPUT; ignored");
                continue;
            };
            if seen.insert(input.request_id.clone()) && input_tx.send(input).await.is_err() {
                return anyhow::Ok(());
            }
        }
    };
    // Requests go to the worker in batches: whatever is ready, then one flush.
    let write = async move {
        while let Some(first) = input_rx.recv().await {
            let mut next = Some(first);
            while let Some(input) = next {
                if sent_tx.send(input.request_id.clone()).await.is_err() {
                    return anyhow::Ok(());
                }
                to_worker
                    .send(&worker_request(&input))
                    .await
                    .context("the worker process failed")?;
                next = input_rx.try_recv().ok();
            }
            to_worker
                .flush()
                .await
                .context("the worker process failed")?;
        }
        anyhow::Ok(())
    };
    let index = config.index;
    let wrong = crate::test_faults::answers_wrongly(index);
    if wrong {
        warn!(
            replica = index,
            "test fault: this replica answers every request wrongly"
        );
    }
    let read = async move {
        let mut executed: u64 = 0;
        // Outputs of the replies that arrived together, appended together (one batch).
        let mut outputs: Vec<Bytes> = Vec::new();
        while let Some(request_id) = sent_rx.recv().await {
            let mut reply = from_worker
                .next_reply()
                .await
                .context("the worker process failed")?;
            if wrong {
                crate::test_faults::make_wrong(&mut reply);
            }
            executed += 1;
            if executed.is_multiple_of(10_000) {
                info!(replica = index, executed, "inputs executed");
            }
            if !done.contains(&request_id) {
                let output = Output {
                    request_id,
                    replica: index,
                    code: reply.code,
                    message: reply.message.clone(),
                    digest: Bytes::copy_from_slice(&reply.digest()),
                    response: reply.response,
                    detail: String::new(),
                    duration_us: 0,
                    at_ms: crate::records::now_ms(),
                };
                outputs.push(ExecRecord::from(Kind::Output(output)).to_payload());
            }
            if from_worker.reply_buffered() && outputs.len() < GROUP_RECORDS_MAX {
                continue;
            }
            for ack in appender.append_all(outputs.drain(..)) {
                if acks_tx.send(ack.await_ack()).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = follow => r,
        r = write => r,
        r = read => r,
        r = acks => r.and_then(|()| Err(anyhow::anyhow!("acks ended"))),
        _ = shutdown => Ok(()),
    };
    if let Err(e) = &result {
        warn!(replica = config.index, error = %format!("{e:#}"), "replica stops");
    }
    result
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

/// The request ids this replica already has outputs for.
async fn outputs_done(client: &Client, output_log: &str) -> anyhow::Result<HashSet<Bytes>> {
    let mut replay = client
        .replay(output_log, ReplayOptions::default())
        .await
        .with_context(|| format!("replay {output_log}"))?;
    let mut done = HashSet::new();
    while let Some(event) = replay.next().await {
        if let ReplayEvent::Record { payload, .. } = event? {
            if let Some(Kind::Output(output)) = ExecRecord::from_payload(&payload) {
                done.insert(output.request_id);
            }
        } else {
            warn!(log = output_log, "output log bytes skipped");
        }
    }
    Ok(done)
}

/// The worker's request for `input`.
pub fn worker_request(input: &Input) -> WorkerRequest {
    WorkerRequest {
        request_id: input.request_id.clone(),
        method: input.method.clone(),
        message: input.message.clone(),
        seed: input.seed,
        logical_time_ms: input.received_at_ms,
    }
}
