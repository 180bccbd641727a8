//! [`Context`]: what a handler may use instead of the clock and the OS's randomness.

/// Put by Cairn into the extensions of every request it runs (`request.extensions()`): the
/// input's seed, its logical time and its request id. The same on every replica, so a handler
/// that takes time and randomness only from here computes the same outputs everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// Seed for the handler's randomness (e.g. `rand::rngs::StdRng::seed_from_u64`).
    pub seed: u64,
    /// The input's logical time: when the front door received it, ms since the Unix epoch.
    pub logical_time_ms: u64,
    /// The input's request id (16 bytes).
    pub request_id: Vec<u8>,
}

impl Context {
    /// The context of the request a handler is running, if Cairn runs it.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Context> {
        request.extensions().get::<Context>()
    }

    /// The request id as lower-case hex (as in the `cairn-request-id` metadata).
    pub fn request_id_hex(&self) -> String {
        crate::records::hex(&self.request_id)
    }
}
