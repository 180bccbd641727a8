//! Identifiers the format embeds: chunk handles and record ids.

use std::fmt;

/// Names one chunk of one log, cluster-wide. Shown as 16 lower-case hex digits, which is also the
/// replica's file name (`{handle:016x}.chunk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkHandle(pub u64);

impl fmt::Display for ChunkHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for ChunkHandle {
    type Err = std::num::ParseIntError;

    /// Parses the 16-hex-digit form that [`Display`](fmt::Display) prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(ChunkHandle)
    }
}

/// The unique name of a record: the appender that wrote it and its position in that appender's
/// sequence. A retried record keeps its id, so readers can drop the second copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// Random per appender; never zero for data records (zero marks padding).
    pub writer: u64,
    /// 1, 2, 3, … per writer; a retry reuses the number.
    pub sequence: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.writer, self.sequence)
    }
}
