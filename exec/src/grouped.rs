//! Records handed to an [`Appender`] in groups, so that records produced close together travel
//! in one batch (one `Append` RPC, one fsync per replica) instead of the first of a burst going
//! out alone and the rest behind it. Each record is still its own record in the log; only how
//! many share an RPC changes. Used for the front door's INPUTs (gathered for a few scheduler
//! yields) and VOTEs (gathered for a short hold, one group in flight at a time: they are not on
//! a caller's path).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{AppendAck, Appender};
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Most records in one group.
pub const GROUP_RECORDS_MAX: usize = 1024;

/// How a [`GroupedAppender`] gathers a group.
#[derive(Clone, Copy, Debug)]
pub struct GroupPolicy {
    /// After the first record, yield to the scheduler up to this many times while each yield
    /// brought more records (tasks woken together append together).
    pub yields_max: u32,
    /// After the first record, wait this long for more (zero: no wait).
    pub hold: Duration,
    /// Send the next group only once the previous one is acknowledged.
    pub one_in_flight: bool,
}

/// A record waiting for its group, and who wants its acknowledgement.
type Queued = (
    Bytes,
    Option<oneshot::Sender<cairn_client::Result<AppendAck>>>,
);

/// The handle of a grouping task over one appender. Dropping every clone ends the task once
/// the queued records are handed to the appender.
#[derive(Clone, Debug)]
pub struct GroupedAppender {
    tx: mpsc::UnboundedSender<Queued>,
}

impl GroupedAppender {
    /// Starts the grouping task over `appender`; `what` names the records in warnings.
    pub fn start(appender: Appender, policy: GroupPolicy, what: &'static str) -> GroupedAppender {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(appender, policy, what, rx));
        GroupedAppender { tx }
    }

    /// Queues `payload` now (records keep the order of these calls) and returns a future of
    /// its acknowledgement (an error if the appender failed it or the task is gone:
    /// indeterminate, as for [`Appender::append`]).
    pub fn append(
        &self,
        payload: Bytes,
    ) -> impl Future<Output = cairn_client::Result<AppendAck>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self.tx.send((payload, Some(tx))).is_ok();
        async move {
            if !queued {
                return Err(gone());
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        }
    }

    /// Queues `payload` without waiting: a failure is logged as a warning.
    pub fn append_detached(&self, payload: Bytes) {
        if self.tx.send((payload, None)).is_err() {
            warn!("a record could not be queued: its appender's task ended");
        }
    }
}

fn gone() -> cairn_client::Error {
    cairn_client::Error::AppenderClosed {
        message: "the grouping task ended".into(),
    }
}

/// Moves every record already in `rx` into `group` (up to [`GROUP_RECORDS_MAX`]); the number
/// moved.
fn drain(rx: &mut mpsc::UnboundedReceiver<Queued>, group: &mut Vec<Queued>) -> usize {
    let before = group.len();
    while group.len() < GROUP_RECORDS_MAX {
        match rx.try_recv() {
            Ok(queued) => group.push(queued),
            Err(_) => break,
        }
    }
    group.len() - before
}

async fn run(
    appender: Appender,
    policy: GroupPolicy,
    what: &'static str,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        drain(&mut rx, &mut group);
        if !policy.hold.is_zero() {
            let deadline = tokio::time::Instant::now() + policy.hold;
            while group.len() < GROUP_RECORDS_MAX {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(queued)) => {
                        group.push(queued);
                        drain(&mut rx, &mut group);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        for _ in 0..policy.yields_max {
            if group.len() >= GROUP_RECORDS_MAX {
                break;
            }
            tokio::task::yield_now().await;
            if drain(&mut rx, &mut group) == 0 {
                break;
            }
        }
        let (payloads, waiters): (Vec<Bytes>, Vec<_>) = group.into_iter().unzip();
        let acks = appender.append_all(payloads);
        let delivered = async move {
            let results = join_all(acks).await;
            for (result, waiter) in results.into_iter().zip(waiters) {
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            warn!(error = %e, "appending a {what} failed");
                        }
                    }
                }
            }
        };
        if policy.one_in_flight {
            delivered.await;
        } else {
            tokio::spawn(delivered);
        }
    }
}
