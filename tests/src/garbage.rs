//! Garbage for gRPC ports, over raw TCP: random bytes, an HTTP/1 request, a truncated HTTP/2
//! preface, a whole preface followed by junk frames, and gRPC requests with a lying length prefix
//! or a body that is not protobuf. Each helper
//! sends, then reads whatever the server answers for a moment, and returns it (for the log); none
//! of them requires a particular answer — the test then checks that the server is still up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::workload::Rng;

/// How long to wait to connect, and for the server's answer after sending.
const GARBAGE_IO_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long to keep reading once the server has answered something.
const GARBAGE_QUIET_AFTER_ANSWER: Duration = Duration::from_millis(300);

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a server did with some garbage.
#[derive(Debug)]
pub struct Answer {
    /// Bytes it sent back before closing or going quiet (at most 64 KiB kept).
    pub bytes: Vec<u8>,
    /// Whether it closed the connection (EOF or reset) within the wait.
    pub closed: bool,
}

/// Connects, writes `payload` (a write error is fine: the server may have hung up already), half
/// closes if `shutdown_write`, and collects the answer.
pub fn send(addr: SocketAddr, payload: &[u8], shutdown_write: bool) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, GARBAGE_IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    let _ = stream.write_all(payload);
    if shutdown_write {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut deadline = Instant::now() + GARBAGE_IO_TIMEOUT;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let mut closed = false;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => {
                if bytes.len() < 1 << 16 {
                    bytes.extend_from_slice(&buf[..n]);
                }
                // It answered: give it only a moment more (to close, or to say more).
                deadline = deadline.min(Instant::now() + GARBAGE_QUIET_AFTER_ANSWER);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    Ok(Answer { bytes, closed })
}

/// `len` random bytes.
pub fn random_bytes(len: usize, rng: &mut Rng) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// A plain HTTP/1.1 request.
pub fn http1_request() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: cairn\r\nUser-Agent: cairn-tests\r\n\r\n".to_vec()
}

/// The first half of the HTTP/2 preface, then nothing.
pub fn truncated_h2_preface() -> Vec<u8> {
    H2_PREFACE[..H2_PREFACE.len() / 2].to_vec()
}

/// The whole preface, an empty SETTINGS frame, then frames of random types and lengths with
/// random payloads.
pub fn h2_preface_then_junk_frames(rng: &mut Rng) -> Vec<u8> {
    let mut out = H2_PREFACE.to_vec();
    frame(&mut out, 0x4, 0x0, 0, &[]);
    for _ in 0..16 {
        let len = rng.range(0, 512);
        let header = [
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            rng.next_u64() as u8,
            rng.next_u64() as u8,
            0,
            0,
            0,
            rng.range(0, 9) as u8,
        ];
        out.extend_from_slice(&header);
        out.extend(random_bytes(len, rng));
    }
    out
}

/// A gRPC request on a fresh HTTP/2 connection, without waiting for the server's SETTINGS: the
/// preface, an empty SETTINGS frame, a HEADERS frame (stream 1, END_HEADERS; HPACK literals without
/// indexing) for `POST path` with `content-type: application/grpc`, then one DATA frame (with
/// END_STREAM) holding a gRPC message prefix that claims `claimed_len` bytes, followed by `body`.
///
/// With a `claimed_len` of 4 GiB − 1 a server must refuse the message without allocating what it
/// claims; with `claimed_len == body.len()` and a body that is not protobuf it must answer an
/// error status.
pub fn grpc_request(path: &str, claimed_len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = H2_PREFACE.to_vec();
    frame(&mut out, 0x4, 0x0, 0, &[]);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "cairn"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        // Literal header field without indexing, new name (0x00), 7-bit lengths (all < 127 here).
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(&mut out, 0x1, 0x4, 1, &block);
    let mut data = vec![0u8];
    data.extend_from_slice(&claimed_len.to_be_bytes());
    data.extend_from_slice(body);
    frame(&mut out, 0x0, 0x1, 1, &data);
    out
}

/// Appends one HTTP/2 frame.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}
