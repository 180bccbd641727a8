//! Damage to files on disk, for fault tests: bit rot under a (possibly running) chunkserver.

use std::os::unix::fs::FileExt;
use std::path::Path;

/// Flips one bit of the byte at `offset` of the file at `path`, in place, and syncs the file.
///
/// # Panics
/// If the file cannot be opened, read or written at `offset`.
pub fn flip_byte(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)
        .unwrap_or_else(|e| panic!("{} byte {offset}: {e}", path.display()));
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).expect("write the byte back");
    f.sync_all().expect("sync the damaged file");
}
