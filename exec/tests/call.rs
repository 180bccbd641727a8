//! A recorded request driven through a tonic service's `tower::Service`, in process and over a
//! pipe to a worker loop.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use cairn_exec::call::call;
use cairn_exec::pipe::{read_frame, write_frame};
use cairn_exec::records::{WorkerReply, WorkerRequest};
use cairn_exec::{BytesCodec, Context};
use tonic::body::Body;
use tonic::server::{Grpc, NamedService};

/// A service answering `/test.Echo/Echo` with its message followed by the context's seed and
/// logical time, and `/test.Echo/Fail` with NOT_FOUND.
#[derive(Clone, Debug)]
struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        Box::pin(async move {
            let handler = tower::service_fn(move |request: tonic::Request<Bytes>| {
                let path = path.clone();
                async move {
                    let context = Context::of(&request).cloned().expect("a context");
                    match path.as_str() {
                        "/test.Echo/Echo" => {
                            let mut out = request.into_inner().to_vec();
                            out.extend_from_slice(&context.seed.to_be_bytes());
                            out.extend_from_slice(&context.logical_time_ms.to_be_bytes());
                            Ok(tonic::Response::new(Bytes::from(out)))
                        }
                        _ => Err(tonic::Status::not_found(format!(
                            "no {path} for {}",
                            context.request_id_hex()
                        ))),
                    }
                }
            });
            Ok(Grpc::new(BytesCodec).unary(handler, request).await)
        })
    }
}

fn request(method: &str, message: &'static [u8]) -> WorkerRequest {
    WorkerRequest {
        request_id: Bytes::from_static(&[0xab; 16]),
        method: method.into(),
        message: Bytes::from_static(message),
        seed: 0x0102,
        logical_time_ms: 7,
        ..WorkerRequest::default()
    }
}

fn echoed(message: &[u8]) -> WorkerReply {
    let mut out = message.to_vec();
    out.extend_from_slice(&0x0102u64.to_be_bytes());
    out.extend_from_slice(&7u64.to_be_bytes());
    WorkerReply {
        code: 0,
        message: String::new(),
        response: Bytes::from(out),
        snapshot: None,
    }
}

// Proves: an OK call returns the handler's response bytes (read past the gRPC frame, status from
// the trailers) and the handler sees the request's Context; an error returns its code and
// message (a trailers-only response); an empty message works too.
#[tokio::test]
async fn a_recorded_request_runs_through_the_tower_service() {
    let mut echo = Echo;
    let ok = call(&mut echo, &request("/test.Echo/Echo", b"hello")).await;
    assert_eq!(ok, echoed(b"hello"));
    let empty = call(&mut echo, &request("/test.Echo/Echo", b"")).await;
    assert_eq!(empty, echoed(b""));
    let failed = call(&mut echo, &request("/test.Echo/Fail", b"x")).await;
    assert_eq!(failed.code, tonic::Code::NotFound as u32);
    assert_eq!(
        failed.message,
        format!("no /test.Echo/Fail for {}", "ab".repeat(16))
    );
    assert!(failed.response.is_empty());
    assert_ne!(ok.digest(), failed.digest());
}

// Proves: the worker loop answers each request frame on the pipe in order, and ends when its
// input ends.
#[tokio::test]
async fn the_worker_loop_answers_frames_in_order() {
    let (mut to_worker, worker_in) = tokio::io::duplex(1 << 16);
    let (worker_out, mut from_worker) = tokio::io::duplex(1 << 16);
    let worker = tokio::spawn(cairn_exec::worker::serve_pipe(
        || Echo,
        worker_in,
        worker_out,
    ));
    let messages: [&'static [u8]; 3] = [b"a", b"bb", b"ccc"];
    for m in messages {
        write_frame(&mut to_worker, &request("/test.Echo/Echo", m))
            .await
            .unwrap();
    }
    write_frame(&mut to_worker, &request("/test.Echo/Fail", b""))
        .await
        .unwrap();
    for m in messages {
        let reply: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
        assert_eq!(reply, echoed(m));
    }
    let reply: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
    assert_eq!(reply.code, tonic::Code::NotFound as u32);
    drop(to_worker);
    worker.await.unwrap().unwrap();
    assert_eq!(
        read_frame::<_, WorkerReply>(&mut from_worker)
            .await
            .unwrap(),
        None
    );
}

/// A state of raw bytes whose snapshot is the bytes themselves.
#[derive(Clone, Debug, Default)]
struct Blob(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl cairn_exec::Snapshot for Blob {
    fn snapshot(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.first() == Some(&0xff) {
            return Err("a blob never starts with 0xff".into());
        }
        *self.0.lock().unwrap() = bytes.to_vec();
        Ok(())
    }
}

/// The snapshot frames answering one snapshot request, joined; or the reply that refused it.
async fn read_snapshot_frames<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<(Vec<u8>, usize), WorkerReply> {
    let mut joined = Vec::new();
    let mut frames = 0;
    loop {
        let reply: WorkerReply = read_frame(reader).await.unwrap().unwrap();
        let Some(part) = reply.snapshot.clone() else {
            return Err(reply);
        };
        frames += 1;
        joined.extend_from_slice(&part.data);
        if !part.more {
            return Ok((joined, frames));
        }
    }
}

// Proves: a worker of a service with snapshots answers a snapshot request with the state's
// bytes, a 40 MiB state in several frames (more set on all but the last), in order with the
// calls around it; restores a 40 MiB snapshot sent in several frames with one reply after the
// last; and refuses bytes its service refuses with INVALID_ARGUMENT and the service's reason.
#[tokio::test]
async fn a_worker_takes_and_restores_snapshots_of_any_size_in_order() {
    use cairn_exec::pipe::snapshot_frames;
    let (mut to_worker, worker_in) = tokio::io::duplex(1 << 16);
    let (worker_out, mut from_worker) = tokio::io::duplex(1 << 16);
    let blob = Blob::default();
    let big: Vec<u8> = (0..40usize << 20).map(|i| (i % 253) as u8).collect();
    *blob.0.lock().unwrap() = big.clone();
    let hosted = blob.clone();
    let worker = tokio::spawn(cairn_exec::worker::serve_hosted_pipe(
        move || cairn_exec::worker::Hosted::with_snapshots(Echo, hosted),
        worker_in,
        worker_out,
    ));
    let reader = tokio::spawn(async move {
        let first: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
        assert_eq!(first, echoed(b"before"));
        let (taken, frames) = read_snapshot_frames(&mut from_worker).await.unwrap();
        let after: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
        assert_eq!(after, echoed(b"after"));
        let restored: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
        let refused: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
        (taken, frames, restored, refused)
    });
    write_frame(&mut to_worker, &request("/test.Echo/Echo", b"before"))
        .await
        .unwrap();
    let snapshot = WorkerRequest {
        snapshot: true,
        ..WorkerRequest::default()
    };
    write_frame(&mut to_worker, &snapshot).await.unwrap();
    write_frame(&mut to_worker, &request("/test.Echo/Echo", b"after"))
        .await
        .unwrap();
    let replacement = Bytes::from(vec![7u8; (33 << 20) + 3]);
    for bytes in [replacement.clone(), Bytes::from_static(b"\xffno")] {
        for part in snapshot_frames(&bytes) {
            let restore = WorkerRequest {
                restore: Some(part),
                ..WorkerRequest::default()
            };
            write_frame(&mut to_worker, &restore).await.unwrap();
        }
    }
    let (taken, frames, restored, refused) = reader.await.unwrap();
    assert_eq!(taken.len(), big.len());
    assert!(taken == big, "the snapshot is the state's bytes");
    assert_eq!(frames, 3, "40 MiB travel in 3 frames of at most 16 MiB");
    assert_eq!(restored, WorkerReply::default(), "restored: OK");
    assert_eq!(refused.code, tonic::Code::InvalidArgument as u32);
    assert!(
        refused.message.contains("never starts with 0xff"),
        "{refused:?}"
    );
    assert!(*blob.0.lock().unwrap() == replacement.to_vec());
    drop(to_worker);
    worker.await.unwrap().unwrap();
}

// Proves: a worker of a service without snapshots answers a snapshot request and a restore
// with UNIMPLEMENTED "snapshots not supported", and goes on answering calls.
#[tokio::test]
async fn a_worker_without_snapshots_says_so_and_goes_on() {
    let (mut to_worker, worker_in) = tokio::io::duplex(1 << 16);
    let (worker_out, mut from_worker) = tokio::io::duplex(1 << 16);
    let worker = tokio::spawn(cairn_exec::worker::serve_pipe(
        || Echo,
        worker_in,
        worker_out,
    ));
    let snapshot = WorkerRequest {
        snapshot: true,
        ..WorkerRequest::default()
    };
    write_frame(&mut to_worker, &snapshot).await.unwrap();
    let restore = WorkerRequest {
        restore: cairn_exec::pipe::snapshot_frames(&Bytes::from_static(b"x")).pop(),
        ..WorkerRequest::default()
    };
    write_frame(&mut to_worker, &restore).await.unwrap();
    write_frame(&mut to_worker, &request("/test.Echo/Echo", b"still"))
        .await
        .unwrap();
    for _ in 0..2 {
        let refused = read_snapshot_frames(&mut from_worker).await.unwrap_err();
        assert_eq!(refused.code, tonic::Code::Unimplemented as u32);
        assert_eq!(refused.message, cairn_exec::snapshot::SNAPSHOTS_UNSUPPORTED);
    }
    let reply: WorkerReply = read_frame(&mut from_worker).await.unwrap().unwrap();
    assert_eq!(reply, echoed(b"still"));
    drop(to_worker);
    worker.await.unwrap().unwrap();
}
