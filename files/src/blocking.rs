//! [`Blocking`]: where the roles run blocking file work from async code.

/// Where the roles run blocking file work (a store create, seal or delete, an operation-log
/// write, a scrub slice) from async code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Blocking {
    /// On tokio's blocking thread pool, so the async workers never wait for a disk.
    #[default]
    Threads,
    /// Right here, in the calling task: a simulation, whose disk is memory and whose every
    /// interleaving must be decided by its own scheduler, not by OS threads.
    Inline,
}

impl Blocking {
    /// Runs `f` as this says. A panic in `f` is resumed in the caller.
    pub async fn run<T: Send + 'static>(self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self {
            Blocking::Threads => match tokio::task::spawn_blocking(f).await {
                Ok(t) => t,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("blocking work cancelled by the runtime's shutdown: {e}"),
            },
            Blocking::Inline => f(),
        }
    }
}
