//! Runs one recorded request through a generated tonic server's `tower::Service`: the message
//! bytes go in gRPC-framed, the framed response and the `grpc-status` come back as a
//! [`WorkerReply`]. No decoding of messages and no code generation beyond tonic's.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use tonic::Code;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use crate::context::Context;
use crate::records::{WorkerReply, WorkerRequest};

/// What the execution layer hosts: a generated tonic server (e.g. `BankServer<Bank>`).
pub trait HostedService:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + 'static
{
}

impl<S> HostedService for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + 'static
{
}

/// `message` behind the 5-byte gRPC prefix (uncompressed, big-endian length).
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// The message inside one gRPC frame, `None` if `framed` is not exactly one uncompressed frame.
pub fn grpc_unframe(mut framed: Bytes) -> Option<Bytes> {
    if framed.len() < 5 || framed[0] != 0 {
        return None;
    }
    framed.advance(1);
    let len = framed.get_u32() as usize;
    (framed.len() == len).then_some(framed)
}

/// Runs `request` through `service` with its [`Context`] in the request extensions.
pub async fn call<S: HostedService>(service: &mut S, request: &WorkerRequest) -> WorkerReply {
    let mut http_request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://cairn.exec{}", request.method))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(Full::new(grpc_frame(&request.message))))
        .expect("a request of a fixed shape");
    http_request.extensions_mut().insert(Context {
        seed: request.seed,
        logical_time_ms: request.logical_time_ms,
        request_id: request.request_id.to_vec(),
    });
    let Ok(ready) = service.ready().await;
    let Ok(response) = ready.call(http_request).await;
    let (parts, body) = response.into_parts();
    // A trailers-only response carries its status in the headers.
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return status_reply(&status);
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return status_reply(&status),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = tonic::Status::from_header_map(&trailers)
        .unwrap_or_else(|| tonic::Status::internal("the service's response had no grpc-status"));
    if status.code() != Code::Ok {
        return status_reply(&status);
    }
    match grpc_unframe(collected.to_bytes()) {
        Some(response) => WorkerReply {
            code: 0,
            message: String::new(),
            response,
            snapshot: None,
        },
        None => status_reply(&tonic::Status::internal(
            "the service's response was not one uncompressed message",
        )),
    }
}

/// The reply of a call that ended with `status`.
pub fn status_reply(status: &tonic::Status) -> WorkerReply {
    WorkerReply {
        code: status.code() as u32,
        message: status.message().to_string(),
        response: Bytes::new(),
        snapshot: None,
    }
}
