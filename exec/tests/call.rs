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
