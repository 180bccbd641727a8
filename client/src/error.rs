//! The client's one error type.

use std::error::Error as _;

use cairn_record::WriterId;

/// Why a client call failed. Callers branch on the variant; [`Error::Rpc`] keeps the gRPC
/// status [`Code`] of anything else. More variants may be added: a `match` needs a wildcard
/// arm. The crate's guide, "Errors and retries", says what each one means for a record.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log does not exist (create it first).
    #[error("log {path:?} not found")]
    LogNotFound {
        /// The log asked for.
        path: String,
    },
    /// `create_log` for a path that is taken.
    #[error("log {path:?} already exists")]
    LogExists {
        /// The log asked for.
        path: String,
    },
    /// The master could not be reached (connect failed or the connection broke).
    #[error("master {addr} unreachable: {message}")]
    MasterUnreachable {
        /// The master address used.
        addr: String,
        /// What the transport said.
        message: String,
    },
    /// A record payload above the log's limit (`min(chunk capacity / 4, 16 MiB)`).
    #[error("record of {len} bytes exceeds the limit of {max} bytes for this log")]
    RecordTooLarge {
        /// Payload bytes offered.
        len: usize,
        /// The log's record payload limit in bytes.
        max: usize,
    },
    /// Bad options or arguments, refused before or by the server.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// Retries ran out: the cluster could not take or serve the request in time.
    #[error("unavailable: {message}")]
    Unavailable {
        /// The last failure seen.
        message: String,
    },
    /// A server answered something the protocol does not allow.
    #[error("protocol error: {message}")]
    Protocol {
        /// What was wrong with the answer.
        message: String,
    },
    /// A record was refused because a different record is stored under its (writer,
    /// sequence): two processes append as one writer id, or a resend changed its payload.
    /// The refusal stored nothing, but records the appender sent before may be stored; the
    /// appender is closed, and every record it had not had acknowledged fails with this.
    #[error("writer conflict: {message}")]
    WriterConflict {
        /// The primary's explanation, naming the writer and sequence.
        message: String,
    },
    /// A record was not stored because a record with the same (writer, sequence) already is,
    /// stored by someone else (an earlier incarnation of a resumed writer, or another process
    /// using this writer id), and too long ago for the primary to compare the two: it remembers
    /// a writer's last 4,096 records in the open chunk, and only the last one acknowledged in
    /// the chunks before. Whether the stored record is this one is unknown. Only that record
    /// fails; the appender goes on.
    #[error(
        "writer {writer:016x} sequence {sequence}: a record with this id is already stored, \
         too long ago to be compared with this one; this one was not stored"
    )]
    UnverifiedDuplicate {
        /// The writer id.
        writer: WriterId,
        /// The record's sequence.
        sequence: u64,
    },
    /// This appender is an older incarnation of a resumed writer: a newer one
    /// ([`crate::Client::resume_appender`]) took the writer id over. Its records are refused
    /// from then on (those it sent before may be stored); the appender is closed.
    #[error("writer fenced: {message}")]
    WriterFenced {
        /// The primary's explanation, naming the writer and both epochs.
        message: String,
    },
    /// The appender stopped: an earlier failure (named in the message) closed it before this
    /// record reached it, so the record was never sent; or its task ended with the record
    /// possibly in flight ("the appender's task ended").
    #[error("appender closed: {message}")]
    AppenderClosed {
        /// Why it stopped.
        message: String,
    },
    /// A cluster on TLS refused the call for who made it: no certificate and no token, an
    /// unknown or revoked token, or a grant too small for the call (README, "Security"). Nothing
    /// was done; retrying with the same identity cannot help.
    #[error("access denied: {message}")]
    AccessDenied {
        /// The server's explanation: what the call needs and what the caller presented.
        message: String,
    },
    /// Any other gRPC failure.
    #[error("rpc failed ({code}): {message}")]
    Rpc {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

/// A gRPC status code, as [`Error::Rpc`] carries it: the client's own type, so that the
/// gRPC library the client is built on is not part of its API. The variants are gRPC's
/// canonical codes (their numbers are [`Code::number`]); more may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `OK` (0): not an error; no client error carries it.
    Ok,
    /// `CANCELLED` (1): the call was cancelled.
    Cancelled,
    /// `UNKNOWN` (2): an error with no better code.
    Unknown,
    /// `INVALID_ARGUMENT` (3): the request is wrong whatever the server's state.
    InvalidArgument,
    /// `DEADLINE_EXCEEDED` (4): no answer within the call's deadline (it may still have taken
    /// effect).
    DeadlineExceeded,
    /// `NOT_FOUND` (5): something named by the request does not exist.
    NotFound,
    /// `ALREADY_EXISTS` (6): what the request would create exists.
    AlreadyExists,
    /// `PERMISSION_DENIED` (7): the caller may not do this.
    PermissionDenied,
    /// `RESOURCE_EXHAUSTED` (8): a quota or a resource (such as disk space) ran out.
    ResourceExhausted,
    /// `FAILED_PRECONDITION` (9): the server is not in the state the request needs.
    FailedPrecondition,
    /// `ABORTED` (10): the operation was aborted (a conflict).
    Aborted,
    /// `OUT_OF_RANGE` (11): past the valid range.
    OutOfRange,
    /// `UNIMPLEMENTED` (12): the server does not serve this call (not a Cairn server of the
    /// expected role, or an older one).
    Unimplemented,
    /// `INTERNAL` (13): the server broke an invariant of its own.
    Internal,
    /// `UNAVAILABLE` (14): the server could not be reached or cannot serve now.
    Unavailable,
    /// `DATA_LOSS` (15): stored data is damaged.
    DataLoss,
    /// `UNAUTHENTICATED` (16): the caller has no valid credentials.
    Unauthenticated,
}

impl Code {
    /// The code's gRPC name, e.g. `NOT_FOUND` (what [`Display`](std::fmt::Display) prints).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code's number on the wire (0 for `OK` to 16 for `UNAUTHENTICATED`).
    pub fn number(self) -> i32 {
        match self {
            Code::Ok => 0,
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }

    /// The code of a tonic status. Crate-internal, so that tonic stays out of the public API.
    pub(crate) fn from_tonic(code: tonic::Code) -> Code {
        match code {
            tonic::Code::Ok => Code::Ok,
            tonic::Code::Cancelled => Code::Cancelled,
            tonic::Code::Unknown => Code::Unknown,
            tonic::Code::InvalidArgument => Code::InvalidArgument,
            tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
            tonic::Code::NotFound => Code::NotFound,
            tonic::Code::AlreadyExists => Code::AlreadyExists,
            tonic::Code::PermissionDenied => Code::PermissionDenied,
            tonic::Code::ResourceExhausted => Code::ResourceExhausted,
            tonic::Code::FailedPrecondition => Code::FailedPrecondition,
            tonic::Code::Aborted => Code::Aborted,
            tonic::Code::OutOfRange => Code::OutOfRange,
            tonic::Code::Unimplemented => Code::Unimplemented,
            tonic::Code::Internal => Code::Internal,
            tonic::Code::Unavailable => Code::Unavailable,
            tonic::Code::DataLoss => Code::DataLoss,
            tonic::Code::Unauthenticated => Code::Unauthenticated,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a status came from the transport (connect or stream failure) rather than from a
/// server handler: tonic attaches the transport error as the status's source.
pub(crate) fn is_transport(status: &tonic::Status) -> bool {
    status.source().is_some()
}

impl Error {
    /// Whether this says the master could not be reached or answer now (it may later): a
    /// replay then reads the sealed chunks it last listed (`sealed_cache`).
    pub(crate) fn is_master_away(&self) -> bool {
        match self {
            Error::MasterUnreachable { .. } | Error::Unavailable { .. } => true,
            Error::Rpc { code, .. } => matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            ),
            _ => false,
        }
    }
}

/// Whether a status is a server's refusal of the caller's identity (its access guard marks
/// them, so a chunkserver's `PERMISSION_DENIED` for a fenced writer is not taken for one).
fn is_access_refusal(status: &tonic::Status) -> bool {
    status
        .metadata()
        .get(cairn_proto::net::auth::REFUSAL_METADATA)
        .is_some()
}

/// Whether a failed RPC may succeed when retried (possibly elsewhere).
pub(crate) fn is_retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable
            | DeadlineExceeded
            | Cancelled
            | Unknown
            | Aborted
            | FailedPrecondition
            | NotFound
            | Internal
    )
}

impl Error {
    /// Maps a status from a master call about log `path`.
    pub(crate) fn from_master(status: tonic::Status, path: &str, addr: &str) -> Error {
        if is_access_refusal(&status) {
            return Error::AccessDenied {
                message: status.message().to_owned(),
            };
        }
        if is_transport(&status) {
            // Whatever code the transport's failure came with (UNKNOWN for a connection the
            // server closed, as a TLS server does to a plaintext client).
            return Error::MasterUnreachable {
                addr: addr.to_owned(),
                message: transport_message(&status),
            };
        }
        match status.code() {
            tonic::Code::NotFound => Error::LogNotFound {
                path: path.to_owned(),
            },
            tonic::Code::AlreadyExists => Error::LogExists {
                path: path.to_owned(),
            },
            tonic::Code::InvalidArgument => Error::InvalidArgument {
                message: status.message().to_owned(),
            },
            tonic::Code::Unavailable => Error::Unavailable {
                message: status.message().to_owned(),
            },
            code => Error::Rpc {
                code: Code::from_tonic(code),
                message: status.message().to_owned(),
            },
        }
    }

    /// Maps a status from a chunkserver call.
    pub(crate) fn from_chunkserver(status: tonic::Status, addr: &str) -> Error {
        if is_access_refusal(&status) {
            return Error::AccessDenied {
                message: format!("{addr}: {}", status.message()),
            };
        }
        match status.code() {
            tonic::Code::InvalidArgument => Error::InvalidArgument {
                message: format!("{addr}: {}", status.message()),
            },
            tonic::Code::AlreadyExists => Error::WriterConflict {
                message: format!("{addr}: {}", status.message()),
            },
            tonic::Code::PermissionDenied => Error::WriterFenced {
                message: format!("{addr}: {}", status.message()),
            },
            tonic::Code::Unavailable => Error::Unavailable {
                message: format!("chunkserver {addr}: {}", transport_message(&status)),
            },
            code => Error::Rpc {
                code: Code::from_tonic(code),
                message: format!("{addr}: {}", status.message()),
            },
        }
    }
}

/// The status message plus its innermost transport cause, which says why a connect failed.
pub(crate) fn transport_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    let mut source = status.source();
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(last) = last
        && !message.contains(&last)
    {
        message = format!("{message} ({last})");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: every tonic code maps to the client's code of the same gRPC number and name, so
    // an `Error::Rpc` says what the server said (and the mapping is one to one).
    #[test]
    fn codes_mirror_grpc() {
        let all = [
            tonic::Code::Ok,
            tonic::Code::Cancelled,
            tonic::Code::Unknown,
            tonic::Code::InvalidArgument,
            tonic::Code::DeadlineExceeded,
            tonic::Code::NotFound,
            tonic::Code::AlreadyExists,
            tonic::Code::PermissionDenied,
            tonic::Code::ResourceExhausted,
            tonic::Code::FailedPrecondition,
            tonic::Code::Aborted,
            tonic::Code::OutOfRange,
            tonic::Code::Unimplemented,
            tonic::Code::Internal,
            tonic::Code::Unavailable,
            tonic::Code::DataLoss,
            tonic::Code::Unauthenticated,
        ];
        for (n, tonic_code) in all.into_iter().enumerate() {
            let code = Code::from_tonic(tonic_code);
            assert_eq!(code.number(), tonic_code as i32, "{tonic_code:?}");
            assert_eq!(code.number(), n as i32, "{tonic_code:?}");
            // tonic's Debug is the CamelCase of the gRPC name.
            let camel: String = code
                .as_str()
                .split('_')
                .map(|w| w[..1].to_owned() + &w[1..].to_lowercase())
                .collect();
            assert_eq!(camel, format!("{tonic_code:?}"));
        }
        let e = Error::from_chunkserver(tonic::Status::data_loss("chunk 5c corrupt"), "cs:1");
        assert_eq!(
            e.to_string(),
            "rpc failed (DATA_LOSS): cs:1: chunk 5c corrupt"
        );
        assert!(e.is_data_loss());
    }

    // Proves: a refusal marked by a server's access guard is AccessDenied whatever its code (a
    // chunkserver's unmarked PERMISSION_DENIED stays a fenced writer), and a master call that
    // failed in the transport is MasterUnreachable whatever code the transport gave it.
    #[test]
    fn refusals_and_transport_failures_are_typed() {
        let mut refused = tonic::Status::permission_denied("needs the append grant");
        refused.metadata_mut().insert(
            cairn_proto::net::auth::REFUSAL_METADATA,
            tonic::metadata::MetadataValue::from_static("access"),
        );
        let e = Error::from_chunkserver(refused.clone(), "cs:1");
        assert!(matches!(e, Error::AccessDenied { .. }), "{e}");
        let e = Error::from_master(refused, "/l", "m:1");
        assert!(matches!(e, Error::AccessDenied { .. }), "{e}");
        let fenced =
            Error::from_chunkserver(tonic::Status::permission_denied("epoch 1 < 2"), "cs:1");
        assert!(matches!(fenced, Error::WriterFenced { .. }), "{fenced}");
        let broken = tonic::Status::from_error(Box::new(std::io::Error::other("broken pipe")));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        let e = Error::from_master(broken, "/l", "m:1");
        assert!(matches!(e, Error::MasterUnreachable { .. }), "{e}");
    }
}
