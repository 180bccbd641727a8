//! Frames on a pipe between a replica and its worker process: a u32 big-endian length, then
//! that many bytes of one prost message.

use std::io;

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::records::SnapshotBytes;

/// Buffer size of each side of a worker's pipe.
pub const PIPE_BUFFER_BYTES: usize = 64 << 10;

/// The largest frame either side accepts (a request or response message plus a few fields).
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// Snapshot bytes carried by one frame at most (16 MiB): a larger snapshot, to take or to
/// restore, travels in consecutive frames ([`snapshot_frames`]).
pub const SNAPSHOT_FRAME_DATA_BYTES_MAX: usize = 16 << 20;

// A snapshot frame's data and its few fields fit one frame.
const _: () = assert!(SNAPSHOT_FRAME_DATA_BYTES_MAX + 64 <= FRAME_BYTES_MAX);

/// `bytes` cut into the parts that travel in consecutive frames, `more` set on all but the
/// last; an empty snapshot is one empty part.
pub fn snapshot_frames(bytes: &Bytes) -> Vec<SnapshotBytes> {
    if bytes.is_empty() {
        return vec![SnapshotBytes {
            data: Bytes::new(),
            more: false,
        }];
    }
    let count = bytes.len().div_ceil(SNAPSHOT_FRAME_DATA_BYTES_MAX);
    (0..count)
        .map(|i| {
            let start = i * SNAPSHOT_FRAME_DATA_BYTES_MAX;
            let end = (start + SNAPSHOT_FRAME_DATA_BYTES_MAX).min(bytes.len());
            SnapshotBytes {
                data: bytes.slice(start..end),
                more: i + 1 < count,
            }
        })
        .collect()
}

/// Writes `message` as one frame and flushes.
pub async fn write_frame<W, M>(writer: &mut W, message: &M) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    write_frame_unflushed(writer, message).await?;
    writer.flush().await
}

/// Writes `message` as one frame without flushing (the caller flushes after a batch).
pub async fn write_frame_unflushed<W, M>(writer: &mut W, message: &M) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    M: Message,
{
    let len = message.encoded_len();
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes over {FRAME_BYTES_MAX}"),
        ));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut buf).expect("a Vec grows");
    writer.write_all(&buf).await
}

/// Whether `buffered` starts with one whole frame (its length prefix and all its bytes).
pub fn frame_buffered(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(len) => buffered.len() - 4 >= u32::from_be_bytes(*len) as usize,
        None => false,
    }
}

/// Reads one frame; `Ok(None)` at a clean end of the stream (before a frame's first byte).
pub async fn read_frame<R, M>(reader: &mut R) -> io::Result<Option<M>>
where
    R: AsyncRead + Unpin,
    M: Message + Default,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes over {FRAME_BYTES_MAX}"),
        ));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    M::decode(buf.as_slice())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::WorkerReply;

    // Proves: frames round-trip in order, a clean end reads as None, a cut frame is an error,
    // and a buffer is seen to hold a whole frame exactly when it does.
    #[tokio::test]
    async fn frames_round_trip_and_cut_frames_fail() {
        let replies = [
            WorkerReply {
                code: 0,
                message: String::new(),
                response: bytes::Bytes::from_static(b"one"),
                snapshot: None,
            },
            WorkerReply {
                code: 5,
                message: "no such account".into(),
                response: bytes::Bytes::new(),
                snapshot: None,
            },
        ];
        let mut buf = Vec::new();
        for r in &replies {
            write_frame(&mut buf, r).await.unwrap();
        }
        let mut reader = buf.as_slice();
        for r in &replies {
            let got: WorkerReply = read_frame(&mut reader).await.unwrap().unwrap();
            assert_eq!(&got, r);
        }
        assert_eq!(
            read_frame::<_, WorkerReply>(&mut reader).await.unwrap(),
            None
        );
        assert!(frame_buffered(&buf));
        assert!(!frame_buffered(&buf[..3]));
        let first_len = 4 + replies[0].encoded_len();
        assert!(frame_buffered(&buf[..first_len]));
        assert!(!frame_buffered(&buf[..first_len - 1]));
        let mut cut = &buf[..buf.len() - 1];
        read_frame::<_, WorkerReply>(&mut cut).await.unwrap();
        assert!(read_frame::<_, WorkerReply>(&mut cut).await.is_err());
    }

    // Proves: snapshot bytes cut into frames rejoin to the same bytes, every frame but the last
    // says more follow, no frame carries more than its bound, and an empty snapshot is one
    // empty frame.
    #[test]
    fn snapshot_frames_rejoin() {
        let big = Bytes::from(
            (0..2 * SNAPSHOT_FRAME_DATA_BYTES_MAX + 5)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let frames = snapshot_frames(&big);
        assert_eq!(frames.len(), 3);
        assert!(frames[..2].iter().all(|f| f.more));
        assert!(!frames[2].more);
        assert!(
            frames
                .iter()
                .all(|f| f.data.len() <= SNAPSHOT_FRAME_DATA_BYTES_MAX)
        );
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
        assert_eq!(joined, big.to_vec());
        let empty = snapshot_frames(&Bytes::new());
        assert_eq!(empty.len(), 1);
        assert!(!empty[0].more && empty[0].data.is_empty());
    }
}
