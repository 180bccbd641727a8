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

use crate::records::{ExecRecord, Input, Kind, Output, WorkerRequest};
use crate::service_logs::ServiceLogs;
use crate::supervisor::Worker;

/// Output appends in flight at most before the replica waits for the oldest ack.
const OUTPUTS_IN_FLIGHT_MAX: usize = 4096;

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
    let mut worker = Worker::spawn(&config.worker_program, &args).context("start the worker")?;
    let appender = client.appender(&output_log).await?;
    let (acks_tx, mut acks_rx) = mpsc::channel::<PendingAck>(OUTPUTS_IN_FLIGHT_MAX);
    let acks = tokio::spawn(async move {
        while let Some(ack) = acks_rx.recv().await {
            ack.await.context("append an output")?;
        }
        anyhow::Ok(())
    });
    let mut inputs = client
        .tail(
            &config.logs.inputs(),
            TailFrom::Start,
            ReplayOptions::default(),
        )
        .await?;
    let mut seen: HashSet<Bytes> = HashSet::new();
    let mut executed: u64 = 0;
    let work = async {
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
                    warn!(chunk, offset, len, %reason, "input log bytes skipped");
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
            let reply = worker
                .call(&worker_request(&input))
                .await
                .context("the worker process failed")?;
            executed += 1;
            if done.contains(&input.request_id) {
                continue;
            }
            let output = Output {
                request_id: input.request_id.clone(),
                replica: config.index,
                code: reply.code,
                message: reply.message.clone(),
                digest: Bytes::copy_from_slice(&reply.digest()),
                response: reply.response,
            };
            let ack = appender.append(ExecRecord::from(Kind::Output(output)).to_payload());
            if acks_tx.send(ack.await_ack()).await.is_err() {
                break;
            }
            if executed.is_multiple_of(10_000) {
                info!(replica = config.index, executed, "inputs executed");
            }
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = shutdown => Ok(()),
        r = acks => r.context("the ack task")?.and_then(|()| Err(anyhow::anyhow!("acks ended"))),
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
