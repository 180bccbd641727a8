//! The protocol's numbers as types: chunk handles, chunk versions, offsets within a chunk,
//! writer ids and record ids, so one cannot be passed where another is meant.

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

/// Identifies one appender (one writer) of records: the first half of every [`RecordId`]. Random
/// per plain appender, chosen by the application for a resumed one; never zero for data records
/// (zero marks padding). Shown as 16 lower-case hex digits, as in a record id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct WriterId(pub u64);

impl WriterId {
    /// The writer id of padding frames, never of a data record.
    pub const PADDING: WriterId = WriterId(0);
}

impl fmt::Display for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::LowerHex for WriterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl std::str::FromStr for WriterId {
    type Err = std::num::ParseIntError;

    /// Parses the hex form that [`Display`](fmt::Display) prints (at most 16 digits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(WriterId)
    }
}

impl From<u64> for WriterId {
    fn from(id: u64) -> WriterId {
        WriterId(id)
    }
}

impl From<WriterId> for u64 {
    /// The wire and on-disk form.
    fn from(id: WriterId) -> u64 {
        id.0
    }
}

/// The version of one chunk: issued by the master only (1 at allocation, one more before each
/// seal's or salvage's fences), so a replica at an older version is stale. Shown in decimal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ChunkVersion(pub u64);

impl ChunkVersion {
    /// The version of a newly allocated chunk.
    pub const FIRST: ChunkVersion = ChunkVersion(1);
    /// The highest version a master issues ([`CHUNK_VERSION_MAX`](crate::limits::CHUNK_VERSION_MAX)).
    pub const MAX: ChunkVersion = ChunkVersion(crate::limits::CHUNK_VERSION_MAX);

    /// The version after this one, `None` past [`ChunkVersion::MAX`] (never wrapped).
    pub fn next(self) -> Option<ChunkVersion> {
        self.0
            .checked_add(1)
            .map(ChunkVersion)
            .filter(|v| *v <= ChunkVersion::MAX)
    }

    /// Whether a master can have issued this version: from [`ChunkVersion::FIRST`] to
    /// [`ChunkVersion::MAX`].
    pub fn is_issuable(self) -> bool {
        (ChunkVersion::FIRST..=ChunkVersion::MAX).contains(&self)
    }
}

impl fmt::Display for ChunkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for ChunkVersion {
    fn from(version: u64) -> ChunkVersion {
        ChunkVersion(version)
    }
}

impl From<ChunkVersion> for u64 {
    /// The wire and on-disk form.
    fn from(version: ChunkVersion) -> u64 {
        version.0
    }
}

/// A byte position in a chunk's data: a file offset of its replica file, header included (the
/// 32-byte header is at 0..32, the first frame at [`ChunkOffset::FIRST_FRAME`]). An append's and
/// a record's offset, the end of the bytes assigned, the commit offset and a sealed length (the
/// end of the last byte) are all chunk offsets; a distance between two is a plain `u64`. Shown in
/// decimal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ChunkOffset(pub u64);

impl ChunkOffset {
    /// Offset 0: never a record's (the header is there), so the wire's "not known".
    pub const ZERO: ChunkOffset = ChunkOffset(0);
    /// Where the first frame starts, right after the chunk header: the length of an empty chunk.
    pub const FIRST_FRAME: ChunkOffset = ChunkOffset(crate::limits::CHUNK_HEADER_BYTES as u64);
}

impl fmt::Display for ChunkOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for ChunkOffset {
    fn from(offset: u64) -> ChunkOffset {
        ChunkOffset(offset)
    }
}

impl From<ChunkOffset> for u64 {
    /// The wire form.
    fn from(offset: ChunkOffset) -> u64 {
        offset.0
    }
}

impl std::ops::Add<u64> for ChunkOffset {
    type Output = ChunkOffset;

    /// The offset `bytes` further on.
    fn add(self, bytes: u64) -> ChunkOffset {
        ChunkOffset(self.0 + bytes)
    }
}

impl std::ops::AddAssign<u64> for ChunkOffset {
    fn add_assign(&mut self, bytes: u64) {
        self.0 += bytes;
    }
}

impl std::ops::Sub for ChunkOffset {
    type Output = u64;

    /// The number of bytes from `start` to `self` (`self` must not be below it).
    fn sub(self, start: ChunkOffset) -> u64 {
        self.0 - start.0
    }
}

/// The unique name of a record: the appender that wrote it and its position in that appender's
/// sequence. A retried record keeps its id, so readers can drop the second copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// The appender; never zero for data records (zero marks padding).
    pub writer: WriterId,
    /// 1, 2, 3, … per writer; a retry reuses the number.
    pub sequence: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.writer, self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_ids_print_as_16_hex_digits_and_parse_back() {
        // Proves: a writer id prints as 16 lower-case hex digits (as the first half of a record
        // id), and that form parses back to the same id.
        let w = WriterId(0x00c0_ffee_0000_00b2);
        assert_eq!(w.to_string(), "00c0ffee000000b2");
        assert_eq!(format!("{w:x}"), "c0ffee000000b2");
        assert_eq!("00c0ffee000000b2".parse::<WriterId>(), Ok(w));
        let id = RecordId {
            writer: w,
            sequence: 12,
        };
        assert_eq!(id.to_string(), "00c0ffee000000b2:12");
    }

    #[test]
    fn versions_print_in_decimal_and_convert_to_the_wire_form() {
        // Proves: a chunk version prints in decimal, and the wire form (a bare u64) converts both
        // ways without change.
        assert_eq!(ChunkVersion(12).to_string(), "12");
        assert_eq!(ChunkVersion::FIRST, ChunkVersion(1));
        assert_eq!(u64::from(ChunkVersion::from(7)), 7);
        assert_eq!(u64::from(WriterId::from(9)), 9);
    }

    #[test]
    fn chunk_offsets_advance_by_byte_counts_and_subtract_to_distances() {
        // Proves: an offset plus a byte count is the offset that far on, two offsets subtract
        // to the bytes between them, and the first frame sits right after the 32-byte header.
        let mut at = ChunkOffset::FIRST_FRAME;
        assert_eq!(at, ChunkOffset(32));
        at += 40;
        assert_eq!(at + 8, ChunkOffset(80));
        assert_eq!(ChunkOffset(80) - ChunkOffset::FIRST_FRAME, 48);
        assert_eq!(ChunkOffset(96).to_string(), "96");
        assert_eq!(u64::from(ChunkOffset::from(7)), 7);
    }

    #[test]
    fn versions_step_by_one_and_stop_at_the_maximum() {
        // Proves: `next` is one more up to `MAX` and refuses to pass it; only 1..=MAX are
        // versions a master issues.
        assert_eq!(ChunkVersion(4).next(), Some(ChunkVersion(5)));
        assert_eq!(
            ChunkVersion(ChunkVersion::MAX.0 - 1).next(),
            Some(ChunkVersion::MAX)
        );
        assert_eq!(ChunkVersion::MAX.next(), None);
        assert_eq!(ChunkVersion(u64::MAX).next(), None);
        assert!(!ChunkVersion(0).is_issuable());
        assert!(ChunkVersion::FIRST.is_issuable());
        assert!(ChunkVersion::MAX.is_issuable());
        assert!(!ChunkVersion(ChunkVersion::MAX.0 + 1).is_issuable());
    }
}
