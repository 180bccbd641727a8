//! [`Snapshot`]: the optional trait a service implements so that a replica recovers from a
//! snapshot of its state instead of re-running every input.

/// The status message a worker answers a snapshot or restore request with when its service has
/// no snapshots (code UNIMPLEMENTED).
pub const SNAPSHOTS_UNSUPPORTED: &str = "snapshots not supported by this service";

/// A service's state as bytes, and back. Implement it on a handle that shares the state with
/// the service (e.g. the bank's `Arc<Mutex<State>>`) and host the service with
/// [`crate::main_with_snapshots`].
///
/// Every replica takes its snapshots at the same points of the input log (after K inputs, K a
/// multiple of `--snapshot-every`) and records blake3 of the bytes, so the snapshot must be
/// **deterministic**: equal states give equal bytes (ordered maps, canonical encodings, no
/// addresses, capacities or hash-map order in the bytes).
///
/// The worker calls these between requests, never during one: a snapshot taken after input K
/// reflects exactly inputs 1..K.
pub trait Snapshot: Send + 'static {
    /// The whole state, encoded. Any size (it is split into records as needed).
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with the one `bytes` encode (a fresh service's state is
    /// replaced, not merged). An error says why the bytes are not a snapshot of this service;
    /// the replica then rebuilds by re-running every input.
    fn restore(&self, bytes: &[u8]) -> Result<(), String>;
}
