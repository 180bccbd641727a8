//! The async runtime openraft runs on: tokio's (its clock, so a simulation's time rules it), and
//! a random-number generator for election timeouts that is seeded rather than drawn from the
//! OS, so two runs of one simulation seed elect the same leaders at the same instants.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioInstant, TokioRuntime};
use rand08::SeedableRng;
use rand08::rngs::SmallRng;

thread_local! {
    /// This thread's election-timeout generator: seeded by [`seed_elections`], or from the OS
    /// on a thread's first draw.
    static RNG: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// Seeds the election timeouts drawn on this thread from now on. A simulation runs every role
/// on one thread, so the master it starts with a seed calls this and every later draw of the
/// run follows from the seed, whatever ran on the thread before.
pub(crate) fn seed_elections(seed: u64) {
    RNG.with(|cell| *cell.borrow_mut() = Some(SmallRng::seed_from_u64(seed)));
}

/// [`TokioRuntime`] with a seeded [`ElectionRng`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SeededRuntime;

/// A handle on this thread's election-timeout generator.
pub(crate) struct ElectionRng;

impl rand08::RngCore for ElectionRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        RNG.with(|cell| {
            let mut rng = cell.borrow_mut();
            let rng = rng.get_or_insert_with(SmallRng::from_entropy);
            rng.next_u64()
        })
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand08::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl AsyncRuntime for SeededRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ElectionRng;
    type OneshotSender<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ElectionRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand08::Rng;

    // Proves: after seeding, a thread draws the same election timeouts every time, whatever
    // it drew before.
    #[test]
    fn seeded_draws_repeat() {
        let draw = || {
            let mut rng = SeededRuntime::thread_rng();
            (0..4)
                .map(|_| rng.gen_range(150..300u64))
                .collect::<Vec<_>>()
        };
        seed_elections(42);
        let first = draw();
        draw();
        seed_elections(42);
        assert_eq!(draw(), first);
    }
}
