//! The client's one error type.

use std::error::Error as _;

use cairn_record::WriterId;

/// Why a client call failed. Callers branch on the variant; [`Error::Rpc`] keeps the gRPC
/// [`tonic::Code`] of anything else.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Nothing of that batch was stored; the appender is closed.
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
    /// ([`crate::Client::resume_appender`]) took the writer id over. Its records are refused;
    /// the appender is closed.
    #[error("writer fenced: {message}")]
    WriterFenced {
        /// The primary's explanation, naming the writer and both epochs.
        message: String,
    },
    /// The appender stopped (an earlier failure, or its task ended).
    #[error("appender closed: {message}")]
    AppenderClosed {
        /// Why it stopped.
        message: String,
    },
    /// Any other gRPC failure.
    #[error("rpc failed ({code:?}): {message}")]
    Rpc {
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a status came from the transport (connect or stream failure) rather than from a
/// server handler: tonic attaches the transport error as the status's source.
pub(crate) fn is_transport(status: &tonic::Status) -> bool {
    status.source().is_some()
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
            tonic::Code::Unavailable if is_transport(&status) => Error::MasterUnreachable {
                addr: addr.to_owned(),
                message: transport_message(&status),
            },
            tonic::Code::Unavailable => Error::Unavailable {
                message: status.message().to_owned(),
            },
            code => Error::Rpc {
                code,
                message: status.message().to_owned(),
            },
        }
    }

    /// Maps a status from a chunkserver call.
    pub(crate) fn from_chunkserver(status: tonic::Status, addr: &str) -> Error {
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
                code,
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
