//! Where the writers of open replicas run: a bounded pool of threads, or inline.
//!
//! A replica's writer is not a thread of its own but a *step* (take everything queued, write and
//! `fdatasync` it as one group, answer it; see the store's `writer` module) that runs whenever the replica
//! has work. A replica is scheduled at most once at a time (its inbox's `scheduled` flag), so
//! its steps never overlap and keep its group-commit order; different replicas step in
//! parallel.
//! - [`Scheduling::Threads`]: at most N threads (`WRITER_THREADS_MAX` by default), started as
//!   work arrives and ended after `WRITER_THREAD_IDLE_MS` without any. Threads no longer grow
//!   with the number of open replicas. While a step waits for the disk, new appends pile up in
//!   the replica's inbox and form its next group, as before.
//! - [`Scheduling::Inline`]: the step runs in the thread that queued the work, at once; a held
//!   early append's deadline is a `tokio::time` sleep. No thread of the store's own, so a
//!   deterministic scheduler (a simulation) decides every interleaving.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::limits::WRITER_THREAD_IDLE_MS;

/// How a store runs its writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduling {
    /// On a pool of at most this many threads (at least 1).
    Threads(usize),
    /// In the thread that queues the work (tests, simulations).
    Inline,
}

/// What a step left to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// More work is queued: step again (the replica stays scheduled).
    Again,
    /// Nothing queued; step again at this instant of tokio's clock (a held append's deadline)
    /// or when work arrives.
    At(tokio::time::Instant),
    /// Nothing queued, nothing held.
    Idle,
    /// The writer ended (sealed, failed, stopped).
    Done,
}

/// Something the scheduler steps: a replica's writer.
pub(crate) trait Step: Send + Sync + 'static {
    /// Runs one step. Called only while the replica is scheduled, never twice at once.
    fn step(self: Arc<Self>) -> Next;

    /// Schedules a step unless one is scheduled already (a timer's wake-up).
    fn wake(self: Arc<Self>);
}

/// The store's scheduler (see the module doc).
pub(crate) enum Scheduler {
    Pool(Arc<Pool>),
    Inline,
}

impl Scheduler {
    /// A scheduler for `scheduling`.
    pub(crate) fn new(scheduling: Scheduling) -> Scheduler {
        match scheduling {
            Scheduling::Threads(n) => Scheduler::Pool(Arc::new(Pool {
                max: n.max(1),
                state: Mutex::new(PoolState::default()),
                work: Condvar::new(),
            })),
            Scheduling::Inline => Scheduler::Inline,
        }
    }

    /// Runs steps of `r` until it is idle. The caller has just marked it scheduled.
    pub(crate) fn run(&self, r: Arc<dyn Step>) {
        match self {
            Scheduler::Pool(pool) => Pool::push(pool, r),
            Scheduler::Inline => loop {
                match r.clone().step() {
                    Next::Again => continue,
                    Next::At(at) => {
                        inline_timer(at, Arc::downgrade(&r));
                        return;
                    }
                    Next::Idle | Next::Done => return,
                }
            },
        }
    }

    /// Threads the pool runs now (0 inline).
    pub(crate) fn threads(&self) -> usize {
        match self {
            Scheduler::Pool(pool) => pool.lock().threads,
            Scheduler::Inline => 0,
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Scheduler::Pool(pool) = self {
            pool.lock().stop = true;
            pool.work.notify_all();
        }
    }
}

/// Wakes `r` at `at` on the current tokio runtime (simulated time in a simulation). Outside a
/// runtime nothing wakes it: the next queued work steps it, and its held appends then expire.
fn inline_timer(at: tokio::time::Instant, r: Weak<dyn Step>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        tokio::time::sleep_until(at).await;
        if let Some(r) = r.upgrade() {
            r.wake();
        }
    });
}

/// A bounded pool of writer threads.
pub(crate) struct Pool {
    max: usize,
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    ready: VecDeque<Arc<dyn Step>>,
    /// Wake-ups at an instant (a held append's deadline), in order; the `u64` breaks ties.
    timers: BTreeMap<(Instant, u64), Weak<dyn Step>>,
    timer_seq: u64,
    threads: usize,
    idle: usize,
    stop: bool,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().expect("writer pool lock poisoned")
    }

    /// Queues a step of `r`, starting a thread if none is idle and the bound allows.
    fn push(pool: &Arc<Pool>, r: Arc<dyn Step>) {
        let mut s = pool.lock();
        s.ready.push_back(r);
        if s.idle > 0 {
            drop(s);
            pool.work.notify_one();
            return;
        }
        if s.threads < pool.max {
            s.threads += 1;
            let n = s.threads;
            drop(s);
            let p = pool.clone();
            let started = std::thread::Builder::new()
                .name(format!("chunk-writer-{n}"))
                .spawn(move || Pool::work(&p));
            if let Err(e) = started {
                let mut s = pool.lock();
                s.threads -= 1;
                let none = s.threads == 0;
                drop(s);
                warn!(error = %e, threads = n - 1, "cannot start a writer thread");
                if none {
                    // No thread at all: step here rather than leave the work stranded.
                    Pool::drain_here(pool);
                }
            }
        }
    }

    /// Runs queued steps in the calling thread until none is ready (a pool that could start
    /// no thread).
    fn drain_here(pool: &Arc<Pool>) {
        loop {
            let Some(r) = pool.lock().ready.pop_front() else {
                return;
            };
            Pool::after(pool, &r, r.clone().step());
        }
    }

    /// What to do with `r` after a step.
    fn after(pool: &Arc<Pool>, r: &Arc<dyn Step>, next: Next) {
        match next {
            Next::Again => pool.lock().ready.push_back(r.clone()),
            Next::At(at) => {
                // Pool threads run outside any runtime: tokio's clock is the real one there.
                let at = at.into_std();
                let mut s = pool.lock();
                s.timer_seq += 1;
                let seq = s.timer_seq;
                s.timers.insert((at, seq), Arc::downgrade(r));
                let idle = s.idle > 0;
                drop(s);
                if idle {
                    // An idle thread recomputes its wait to cover the new deadline.
                    pool.work.notify_one();
                }
            }
            Next::Idle | Next::Done => {}
        }
    }

    /// A pool thread: steps ready replicas, fires due timers, ends when idle for long or when
    /// the store is gone.
    fn work(pool: &Arc<Pool>) {
        let idle_exit = Duration::from_millis(WRITER_THREAD_IDLE_MS);
        loop {
            let mut s = pool.lock();
            let r = loop {
                let now = Instant::now();
                while let Some(entry) = s.timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let due = entry.remove();
                    if let Some(r) = due.upgrade() {
                        // `wake` schedules through `push`, which takes this lock: release it.
                        drop(s);
                        r.wake();
                        s = pool.lock();
                    }
                }
                if let Some(r) = s.ready.pop_front() {
                    break r;
                }
                if s.stop {
                    s.threads -= 1;
                    return;
                }
                let wait = s
                    .timers
                    .keys()
                    .next()
                    .map_or(idle_exit, |(at, _)| at.saturating_duration_since(now));
                s.idle += 1;
                let (guard, timeout) = pool
                    .work
                    .wait_timeout(s, wait)
                    .expect("writer pool lock poisoned");
                s = guard;
                s.idle -= 1;
                if timeout.timed_out()
                    && s.ready.is_empty()
                    && s.timers.is_empty()
                    && wait == idle_exit
                {
                    s.threads -= 1;
                    return;
                }
            };
            drop(s);
            let next = r.clone().step();
            Pool::after(pool, &r, next);
        }
    }
}
