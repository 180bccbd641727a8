//! Cairn's file plumbing, shared by both server roles: the [`Disk`] seam every durable write
//! goes through, its implementations, durable small files, and where blocking file work runs.
//!
//! # Layout
//! - [`disk`]: the [`Disk`] and [`DiskFile`] traits, [`FsDisk`] (the real file system), and
//!   [`SharedDisk`], any disk behind a trait object (the master's seam).
//! - [`faulty`]: [`FaultyDisk`], an in-memory disk with real fsync semantics that tears writes,
//!   fails fsync, fills up, flips bits and loses unsynced data on a simulated crash.
//! - [`write_behind`]: [`WriteBehindDisk`], the power-cut test mode of both roles: real files
//!   whose unsynced writes live in process memory, so a SIGKILL loses them.
//! - `replace`: [`replace`] (tmp file, fsync, rename, fsync of the directory), [`sync_dir`],
//!   [`read_file`].
//! - `blocking`: [`Blocking`], where blocking file work runs from async code.

mod blocking;
pub mod disk;
pub mod faulty;
mod replace;
pub mod write_behind;

pub use blocking::Blocking;
pub use disk::{Disk, DiskFile, DynDisk, FsDisk, SharedDisk, shared};
pub use faulty::{FaultyDisk, FaultyFile};
pub use replace::{read_file, replace, sync_dir, tmp_path};
pub use write_behind::{WriteBehindDisk, WriteBehindFile};

/// Most iovecs handed to one `pwritev` call (Linux `IOV_MAX`).
pub const WRITEV_IOVECS_MAX: usize = 1024;
