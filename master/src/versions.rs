//! Chunk versions: the one every chunk starts at and the step a seal or salvage takes. A new
//! version is logged before any chunkserver hears of it, so versions only grow.

use cairn_record::{ChunkHandle, ChunkVersion};

use crate::error::{Error, Result};

/// The version every chunk is allocated at. An open chunk at a higher version had a seal begin
/// (the version is logged before any fence) that did not finish.
pub(crate) const FIRST_VERSION: ChunkVersion = ChunkVersion::FIRST;

/// The version after `version`, refused (never wrapped) past [`ChunkVersion::MAX`].
pub(crate) fn next_version(handle: ChunkHandle, version: ChunkVersion) -> Result<ChunkVersion> {
    version
        .next()
        .ok_or(Error::VersionExhausted { handle, version })
}
