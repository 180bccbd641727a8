//! The front door: a gRPC endpoint serving every method of the hosted service to a stock
//! client without decoding a message. Each call becomes an INPUT in the service's input log;
//! the answer is the outcome f+1 replicas agree on, and the vote is appended to the vote log.
//! It keeps nothing a restart loses: idempotency keys and their verdicts, and the quarantined
//! fingerprints, are rebuilt from the vote and input logs.
//!
//! A call that gets no verdict within twice its handler's deadline (`deadline`) is answered
//! DEADLINE_EXCEEDED and recorded PENDING, naming the replicas still out; its VOTE follows when
//! they answer. A call on which f+1 replicas crashed or timed out is answered
//! FAILED_PRECONDITION and recorded QUARANTINE; later calls with its fingerprint are refused at
//! once, until a LIFT record lifts it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{Client, ReplayEvent, ReplayOptions, Tail, TailFrom};
use rand::RngCore;
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Status};
use tracing::{info, warn};

use crate::codec::BytesCodec;
use crate::deadline::{CallDeadline, Deadlines};
use crate::grouped::{GroupPolicy, GroupedAppender};
use crate::records::{
    ExecRecord, Input, Kind, Output, Pending as PendingRecord, REQUEST_ID_BYTES, code_name,
    fingerprint, hex, now_ms,
};
use crate::service_logs::ServiceLogs;
use crate::vote::{Tally, Verdict};

/// Metadata carrying a call's request id back to the caller (lower-case hex).
pub const REQUEST_ID_HEADER: &str = "cairn-request-id";
/// Metadata a caller sets so that a retry gets the first call's verdict.
pub const IDEMPOTENCY_KEY_HEADER: &str = "cairn-idempotency-key";
/// The `grpc-timeout` request header.
const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";
/// Voted requests remembered to spot replicas that answer after the vote differently.
const RECENT_VOTES_MAX: usize = 100_000;
/// INPUTs: calls that arrive together (their tasks woken by one read of the connection) are
/// appended together; a lone call waits one scheduler yield at most.
const INPUT_GROUPS: GroupPolicy = GroupPolicy {
    yields_max: 4,
    hold: Duration::ZERO,
    one_in_flight: false,
};
/// VOTEs are appended after the caller is answered, so they wait a little to share a batch: a
/// group is everything voted within this hold of its first vote, and one group is in flight
/// at a time. A restart loses nothing by it: a keyed input whose vote is not yet in the log is
/// voted again from the output logs.
const VOTE_GROUPS: GroupPolicy = GroupPolicy {
    yields_max: 0,
    hold: Duration::from_millis(5),
    one_in_flight: true,
};

/// Counters of a front door.
#[derive(Debug, Default)]
pub struct FrontDoorStats {
    /// Calls answered with a verdict.
    pub answered: AtomicU64,
    /// Outputs that differed from their request's verdict (before or after it).
    pub dissents: AtomicU64,
    /// Retries answered from an earlier call's verdict.
    pub idempotent_hits: AtomicU64,
    /// Calls answered DEADLINE_EXCEEDED and recorded PENDING.
    pub pending: AtomicU64,
    /// Inputs quarantined by this front door.
    pub quarantined: AtomicU64,
    /// Calls refused because their fingerprint is quarantined.
    pub refused: AtomicU64,
}

/// What a key maps to.
#[derive(Clone, Debug)]
enum KeyState {
    /// The first call with this key is in flight: its request id.
    Pending(Bytes),
    /// Its verdict.
    Done(Arc<Verdict>),
}

/// A request awaiting its vote.
struct Pending {
    tally: Tally,
    waiters: Vec<oneshot::Sender<Arc<Verdict>>>,
    idempotency_key: String,
    /// The input's fingerprint and method, for a QUARANTINE.
    fingerprint: Bytes,
    method: String,
}

/// A voted request, remembered for a while.
struct Voted {
    digest: [u8; 32],
    outputs_seen: u32,
}

#[derive(Default)]
struct State {
    pending: HashMap<Bytes, Pending>,
    keys: HashMap<String, KeyState>,
    voted: HashMap<Bytes, Voted>,
    voted_order: VecDeque<Bytes>,
    /// Quarantined fingerprints: the request that was quarantined.
    quarantined: HashMap<Bytes, Bytes>,
}

/// The shared state of a front door.
pub struct FrontDoor {
    logs: ServiceLogs,
    replicas: u32,
    deadlines: Deadlines,
    inputs: GroupedAppender,
    votes: GroupedAppender,
    state: Mutex<State>,
    /// Counters.
    pub stats: FrontDoorStats,
    /// Voted calls' latency, once [`FrontDoor::register_metrics`] ran.
    call_seconds: std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>,
}

impl std::fmt::Debug for FrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor")
            .field("service", &self.logs.service())
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl FrontDoor {
    /// Connects to the service's logs, rebuilds idempotency keys, quarantined fingerprints and
    /// unvoted keyed requests from the vote and input logs, and starts following every output
    /// log and the vote log. Calls get `deadlines`.
    pub async fn start(
        client: &Client,
        logs: ServiceLogs,
        deadlines: Deadlines,
    ) -> anyhow::Result<Arc<FrontDoor>> {
        let replicas = logs.replica_count(client).await?;
        let door = Arc::new(FrontDoor {
            inputs: GroupedAppender::start(
                client.appender(&logs.inputs()).await?,
                INPUT_GROUPS,
                "input",
            ),
            votes: GroupedAppender::start(
                client.appender(&logs.votes()).await?,
                VOTE_GROUPS,
                "vote",
            ),
            logs,
            replicas,
            deadlines,
            state: Mutex::new(State::default()),
            stats: FrontDoorStats::default(),
            call_seconds: std::sync::OnceLock::new(),
        });
        door.rebuild(client).await?;
        for i in 0..replicas {
            let tail = client
                .tail(
                    &door.logs.output(i),
                    TailFrom::Start,
                    ReplayOptions::default(),
                )
                .await?;
            tokio::spawn(door.clone().follow_outputs(client.clone(), i, tail));
        }
        // From the start, not the end: a tail from the end would miss what is appended between
        // the rebuild's replay and it (learning a record twice changes nothing).
        let mut votes = client
            .tail(
                &door.logs.votes(),
                TailFrom::Start,
                ReplayOptions::default(),
            )
            .await?;
        let weak = Arc::downgrade(&door);
        tokio::spawn(async move {
            while let Some(Ok(event)) = votes.next().await {
                let Some(door) = weak.upgrade() else { return };
                if let ReplayEvent::Record { payload, .. } = event
                    && let Some(kind) = ExecRecord::from_payload(&payload)
                {
                    door.learn(&kind);
                }
            }
        });
        info!(service = door.logs.service(), replicas, "front door ready");
        Ok(door)
    }

    /// Feeds replica `i`'s outputs to the vote for as long as the process runs: a tail that
    /// fails is opened again from the start (outputs seen twice count once).
    async fn follow_outputs(self: Arc<Self>, client: Client, i: u32, mut tail: Tail) {
        loop {
            while let Some(event) = tail.next().await {
                match event {
                    Ok(ReplayEvent::Record { payload, .. }) => {
                        if let Some(Kind::Output(output)) = ExecRecord::from_payload(&payload) {
                            self.on_output(output);
                        }
                    }
                    Ok(ReplayEvent::Skipped { .. }) => {
                        warn!(replica = i, "output log bytes skipped")
                    }
                    // A kind of event newer than this code: it carries no output.
                    Ok(other) => {
                        warn!(
                            replica = i,
                            event = ?other,
                            "an unknown replay event on the output log; ignored"
                        )
                    }
                    Err(e) => {
                        warn!(replica = i, error = %e, "following the output log failed; again in 1 s");
                        break;
                    }
                }
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match client
                    .tail(
                        &self.logs.output(i),
                        TailFrom::Start,
                        ReplayOptions::default(),
                    )
                    .await
                {
                    Ok(t) => {
                        tail = t;
                        break;
                    }
                    Err(e) => warn!(replica = i, error = %e, "reopening the output log failed"),
                }
            }
        }
    }

    /// The number of replicas it votes over.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys with a verdict from the vote log; keyed inputs with none become pending requests
    /// (their outputs, read from the start of the output logs, will be voted).
    async fn rebuild(&self, client: &Client) -> anyhow::Result<()> {
        let mut votes = client
            .replay(&self.logs.votes(), ReplayOptions::default())
            .await?;
        let mut voted = 0u64;
        while let Some(event) = votes.next().await {
            if let ReplayEvent::Record { payload, .. } = event?
                && let Some(kind) = ExecRecord::from_payload(&payload)
            {
                voted += u64::from(matches!(kind, Kind::Vote(_) | Kind::Quarantine(_)));
                self.learn(&kind);
            }
        }
        let mut inputs = client
            .replay(&self.logs.inputs(), ReplayOptions::default())
            .await?;
        let mut resumed = 0u64;
        while let Some(event) = inputs.next().await {
            if let ReplayEvent::Record { payload, .. } = event?
                && let Some(Kind::Input(input)) = ExecRecord::from_payload(&payload)
                && !input.idempotency_key.is_empty()
            {
                let mut g = self.lock();
                if !g.keys.contains_key(&input.idempotency_key) {
                    g.keys.insert(
                        input.idempotency_key.clone(),
                        KeyState::Pending(input.request_id.clone()),
                    );
                    g.pending.insert(
                        input.request_id.clone(),
                        Pending {
                            tally: Tally::new(self.replicas),
                            waiters: Vec::new(),
                            idempotency_key: input.idempotency_key,
                            fingerprint: input.fingerprint,
                            method: input.method,
                        },
                    );
                    resumed += 1;
                }
            }
        }
        let quarantined = self.lock().quarantined.len();
        info!(voted, resumed, quarantined, "front door rebuilt its keys");
        Ok(())
    }

    /// A record of the vote log: a VOTE or QUARANTINE gives its key's verdict, if keyed; a
    /// QUARANTINE adds its fingerprint to the refused ones, a LIFT removes it.
    fn learn(&self, kind: &Kind) {
        let (key, verdict) = match kind {
            Kind::Vote(vote) => (&vote.idempotency_key, Verdict::from_vote(vote)),
            Kind::Quarantine(q) => {
                self.lock()
                    .quarantined
                    .insert(q.fingerprint.clone(), q.request_id.clone());
                (&q.idempotency_key, Verdict::from_quarantine(q))
            }
            Kind::Lift(lift) => {
                if self.lock().quarantined.remove(&lift.fingerprint).is_some() {
                    info!(fingerprint = %hex(&lift.fingerprint), "quarantine lifted");
                }
                return;
            }
            Kind::Input(_) | Kind::Output(_) | Kind::Snapshot(_) | Kind::Pending(_) => return,
        };
        if !key.is_empty() {
            self.lock()
                .keys
                .insert(key.clone(), KeyState::Done(Arc::new(verdict)));
        }
    }

    /// Registers this front door's metrics in `metrics` (its counters at each scrape, and its
    /// voted calls' latency from now on).
    pub fn register_metrics(self: &Arc<Self>, metrics: &cairn_metrics::Metrics) {
        let latency = crate::metrics::register_front_door(metrics, self.logs.service(), self);
        let _ = self.call_seconds.set(latency);
    }

    /// The request that quarantined `fingerprint`, if it is quarantined.
    pub fn quarantined_by(&self, fingerprint: &[u8]) -> Option<Bytes> {
        self.lock().quarantined.get(fingerprint).cloned()
    }

    /// One replica's output: counted towards its request's vote, or checked against the
    /// verdict if it came after it.
    fn on_output(&self, output: Output) {
        let replica = output.replica;
        let request_id = output.request_id.clone();
        let mut g = self.lock();
        if let Some(pending) = g.pending.get_mut(&request_id) {
            let Some(verdict) = pending.tally.add(output) else {
                return;
            };
            let pending = g.pending.remove(&request_id).expect("just found");
            let verdict = Arc::new(verdict);
            for (replica, digest) in &verdict.dissenting {
                self.dissent(*replica, &request_id, digest, &verdict.digest);
            }
            if !pending.idempotency_key.is_empty() {
                g.keys.insert(
                    pending.idempotency_key.clone(),
                    KeyState::Done(verdict.clone()),
                );
            }
            if verdict.quarantined {
                g.quarantined
                    .insert(pending.fingerprint.clone(), request_id.clone());
            }
            g.voted.insert(
                request_id.clone(),
                Voted {
                    digest: verdict.digest,
                    outputs_seen: (verdict.agreeing.len() + verdict.dissenting.len()) as u32,
                },
            );
            g.voted_order.push_back(request_id.clone());
            while g.voted_order.len() > RECENT_VOTES_MAX {
                if let Some(old) = g.voted_order.pop_front() {
                    g.voted.remove(&old);
                }
            }
            drop(g);
            let record = if verdict.quarantined {
                self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
                warn!(
                    service = self.logs.service(),
                    request = %hex(&request_id),
                    method = %pending.method,
                    fingerprint = %hex(&pending.fingerprint),
                    replicas = ?verdict.agreeing,
                    "quarantined: f+1 replicas crashed or timed out on this input"
                );
                Kind::Quarantine(verdict.to_quarantine(
                    &pending.fingerprint,
                    &pending.method,
                    &pending.tally,
                    &pending.idempotency_key,
                ))
            } else {
                Kind::Vote(verdict.to_vote(&pending.idempotency_key))
            };
            self.votes
                .append_detached(ExecRecord::from(record).to_payload());
            for waiter in pending.waiters {
                let _ = waiter.send(verdict.clone());
            }
        } else if let Some(voted) = g.voted.get_mut(&request_id) {
            voted.outputs_seen += 1;
            let agreed = voted.digest;
            if voted.outputs_seen >= self.replicas {
                g.voted.remove(&request_id);
            }
            drop(g);
            let d = crate::records::digest(output.code, &output.message, &output.response);
            if d != agreed {
                self.dissent(replica, &request_id, &d, &agreed);
            }
        }
    }

    fn dissent(&self, replica: u32, request_id: &[u8], digest: &[u8; 32], agreed: &[u8; 32]) {
        self.stats.dissents.fetch_add(1, Ordering::Relaxed);
        warn!(
            service = self.logs.service(),
            replica,
            request = %hex(request_id),
            digest = %hex(digest),
            agreed = %hex(agreed),
            "replica dissents from the vote"
        );
    }

    /// A retry of a keyed call: the first call's verdict (`Ok`), or its request id and a
    /// receiver of its verdict while it is still pending (`Err`); `None` for a new key.
    #[allow(clippy::type_complexity)]
    fn join_first(
        &self,
        idempotency_key: &str,
    ) -> Option<Result<(Bytes, Arc<Verdict>), (Bytes, oneshot::Receiver<Arc<Verdict>>)>> {
        if idempotency_key.is_empty() {
            return None;
        }
        let mut g = self.lock();
        match g.keys.get(idempotency_key).cloned()? {
            KeyState::Done(verdict) => Some(Ok((verdict.request_id.clone(), verdict))),
            KeyState::Pending(first) => {
                let pending = g.pending.get_mut(&first)?;
                let (tx, rx) = oneshot::channel();
                pending.waiters.push(tx);
                Some(Err((first, rx)))
            }
        }
    }

    /// Runs one call: refuses it if its fingerprint is quarantined, else logs it as an INPUT
    /// and waits for its verdict, at most `deadline.verdict` (then PENDING).
    pub async fn call(
        &self,
        method: String,
        message: Bytes,
        idempotency_key: String,
        deadline: CallDeadline,
    ) -> Result<(Bytes, Arc<Verdict>), Status> {
        if let Some(first) = self.join_first(&idempotency_key) {
            self.stats.idempotent_hits.fetch_add(1, Ordering::Relaxed);
            return match first {
                Ok(done) => Ok(done),
                Err((first, rx)) => self.wait(first, rx, deadline).await,
            };
        }
        let fingerprint = Bytes::copy_from_slice(&fingerprint(&method, &message));
        if let Some(by) = self.quarantined_by(&fingerprint) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(with_request_id(
                Status::failed_precondition(format!(
                    "quarantined: f+1 replicas crashed or timed out on an identical call \
                     (request {}); calls with fingerprint {} are refused until `cairn exec \
                     quarantine {} --lift {}`",
                    hex(&by),
                    hex(&fingerprint),
                    self.logs.service(),
                    hex(&fingerprint)
                )),
                &by,
            ));
        }
        let (request_id, receiver) = {
            let mut g = self.lock();
            let mut request_id = [0u8; REQUEST_ID_BYTES];
            rand::rng().fill_bytes(&mut request_id);
            let request_id = Bytes::copy_from_slice(&request_id);
            let (tx, rx) = oneshot::channel();
            g.pending.insert(
                request_id.clone(),
                Pending {
                    tally: Tally::new(self.replicas),
                    waiters: vec![tx],
                    idempotency_key: idempotency_key.clone(),
                    fingerprint: fingerprint.clone(),
                    method: method.clone(),
                },
            );
            if !idempotency_key.is_empty() {
                g.keys.insert(
                    idempotency_key.clone(),
                    KeyState::Pending(request_id.clone()),
                );
            }
            (request_id, rx)
        };
        let input = Input {
            request_id: request_id.clone(),
            fingerprint,
            method,
            message,
            received_at_ms: now_ms(),
            seed: rand::rng().next_u64(),
            idempotency_key: idempotency_key.clone(),
            deadline_ms: deadline.handler.as_millis() as u32,
        };
        let appended = self
            .inputs
            .append(ExecRecord::from(Kind::Input(input)).to_payload())
            .await;
        if let Err(e) = appended {
            // Indeterminate: the input may be in the log, and then it runs; the caller may
            // retry with its idempotency key.
            let mut g = self.lock();
            g.pending.remove(&request_id);
            if !idempotency_key.is_empty() {
                g.keys.remove(&idempotency_key);
            }
            return Err(with_request_id(
                Status::unavailable(format!(
                    "request {} could not be logged: {e}",
                    hex(&request_id)
                )),
                &request_id,
            ));
        }
        self.wait(request_id, receiver, deadline).await
    }

    /// Waits for the verdict of `request_id`; past `deadline.verdict`, records PENDING (if the
    /// request still has none) and answers DEADLINE_EXCEEDED.
    async fn wait(
        &self,
        request_id: Bytes,
        receiver: oneshot::Receiver<Arc<Verdict>>,
        deadline: CallDeadline,
    ) -> Result<(Bytes, Arc<Verdict>), Status> {
        let waited = deadline.verdict;
        match tokio::time::timeout(waited, receiver).await {
            Ok(Ok(verdict)) => Ok((request_id, verdict)),
            Ok(Err(_)) => Err(with_request_id(
                Status::internal(format!(
                    "request {}: the front door dropped it",
                    hex(&request_id)
                )),
                &request_id,
            )),
            Err(_) => {
                let out = self.record_pending(&request_id, deadline);
                Err(with_request_id(
                    Status::deadline_exceeded(format!(
                        "request {}: pending: no f+1 replicas agreed within {} ms (replicas \
                         {out:?} had not answered); it may still execute: find its verdict \
                         with `cairn exec timeline {} {}`",
                        hex(&request_id),
                        waited.as_millis(),
                        self.logs.service(),
                        hex(&request_id)
                    )),
                    &request_id,
                ))
            }
        }
    }

    /// Appends PENDING for `request_id` if it is still without a verdict; the replicas out.
    fn record_pending(&self, request_id: &Bytes, deadline: CallDeadline) -> Vec<u32> {
        let record = {
            let g = self.lock();
            let Some(pending) = g.pending.get(request_id) else {
                return Vec::new();
            };
            PendingRecord {
                request_id: request_id.clone(),
                deadline_ms: deadline.handler.as_millis() as u32,
                out: pending.tally.out(self.replicas),
                answered: pending.tally.outcomes(),
                at_ms: now_ms(),
            }
        };
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        let answered: Vec<String> = record
            .answered
            .iter()
            .map(|o| format!("{}: {}", o.replica, code_name(o.code)))
            .collect();
        warn!(
            service = self.logs.service(),
            request = %hex(request_id),
            out = ?record.out,
            ?answered,
            "pending: no verdict within the call's deadline"
        );
        let out = record.out.clone();
        self.votes
            .append_detached(ExecRecord::from(Kind::Pending(record)).to_payload());
        out
    }
}

/// `status` with `request_id` in its `cairn-request-id` metadata.
fn with_request_id(mut status: Status, request_id: &[u8]) -> Status {
    if let Ok(value) = MetadataValue::try_from(hex(request_id)) {
        status.metadata_mut().insert(REQUEST_ID_HEADER, value);
    }
    status
}

/// The verdict as the caller's answer, with `cairn-request-id` in its metadata.
fn answer(request_id: &[u8], verdict: &Verdict) -> Result<tonic::Response<Bytes>, Status> {
    let mut metadata = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(hex(request_id)) {
        metadata.insert(REQUEST_ID_HEADER, value);
    }
    if verdict.quarantined {
        Err(Status::with_metadata(
            Code::FailedPrecondition,
            format!(
                "quarantined: replicas {:?} crashed or timed out on this call (request {}, \
                 {}); identical calls are refused until the quarantine is lifted",
                verdict.agreeing,
                hex(request_id),
                code_name(verdict.code)
            ),
            metadata,
        ))
    } else if verdict.code == 0 {
        let mut response = tonic::Response::new(verdict.response.clone());
        *response.metadata_mut() = metadata;
        Ok(response)
    } else {
        Err(Status::with_metadata(
            Code::from(verdict.code as i32),
            verdict.message.clone(),
            metadata,
        ))
    }
}

/// The front door as a tonic service answering every path under `S`'s service name (`S` is
/// the hosted generated server; only its name is used).
pub struct FrontDoorService<S> {
    door: Arc<FrontDoor>,
    hosted: PhantomData<fn() -> S>,
}

impl<S> FrontDoorService<S> {
    /// The service over `door`.
    pub fn new(door: Arc<FrontDoor>) -> FrontDoorService<S> {
        FrontDoorService {
            door,
            hosted: PhantomData,
        }
    }
}

impl<S> Clone for FrontDoorService<S> {
    fn clone(&self) -> Self {
        FrontDoorService::new(self.door.clone())
    }
}

impl<S> std::fmt::Debug for FrontDoorService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.door.fmt(f)
    }
}

impl<S: NamedService> NamedService for FrontDoorService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for FrontDoorService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let door = self.door.clone();
        let method = request.uri().path().to_owned();
        let key = request
            .headers()
            .get(IDEMPOTENCY_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let deadline = self.door.deadlines.for_call(
            &method,
            request
                .headers()
                .get(GRPC_TIMEOUT_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let arrived = std::time::Instant::now();
        Box::pin(async move {
            let handler = tower::service_fn(move |call: tonic::Request<Bytes>| {
                let door = door.clone();
                let method = method.clone();
                let key = key.clone();
                async move {
                    let (request_id, verdict) =
                        door.call(method, call.into_inner(), key, deadline).await?;
                    door.stats.answered.fetch_add(1, Ordering::Relaxed);
                    if let Some(latency) = door.call_seconds.get() {
                        latency.observe(arrived.elapsed().as_secs_f64());
                    }
                    answer(&request_id, &verdict)
                }
            });
            Ok(Grpc::new(BytesCodec).unary(handler, request).await)
        })
    }
}
