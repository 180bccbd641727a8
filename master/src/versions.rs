//! Chunk versions: the one every chunk starts at and the step a seal or salvage takes. A new
//! version is logged before any chunkserver hears of it, so versions only grow.

use cairn_record::ChunkHandle;
use cairn_record::limits::CHUNK_VERSION_MAX;

use crate::error::{Error, Result};

/// The version every chunk is allocated at. An open chunk at a higher version had a seal begin
/// (the version is logged before any fence) that did not finish.
pub(crate) const FIRST_VERSION: u64 = 1;

/// The version after `version`, refused (never wrapped) past [`CHUNK_VERSION_MAX`].
pub(crate) fn next_version(handle: ChunkHandle, version: u64) -> Result<u64> {
    match version.checked_add(1) {
        Some(v) if v <= CHUNK_VERSION_MAX => Ok(v),
        _ => Err(Error::VersionExhausted { handle, version }),
    }
}
