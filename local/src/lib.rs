//! A Cairn cluster in one process: a master and N chunkservers on 127.0.0.1, each on its own
//! locked data directory. `cairn local` and `cairn-bank local` both run it.
//!
//! # Layout
//! - [`dir_lock`]: one process per data directory (`DATA/LOCK`).
//! - [`cluster`]: [`LocalCluster`], started with [`LocalConfig`] and run until a shutdown.
//! - [`signal`]: [`shutdown_signal`], Ctrl-C or SIGTERM, for every long-running process.

pub mod cluster;
pub mod dir_lock;
pub mod signal;

pub use cluster::{LocalCluster, LocalConfig};
pub use signal::shutdown_signal;
