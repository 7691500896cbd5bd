//! Client errors, classified like the Python client classifies them.

use std::fmt;

/// Which RPC a failed call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    DriverCall,
    StreamingDriverCall,
    Stream,
}

impl fmt::Display for CallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallKind::DriverCall => "DriverCall",
            CallKind::StreamingDriverCall => "StreamingDriverCall",
            CallKind::Stream => "Stream",
        })
    }
}

/// A driver call that the exporter answered with an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: CallKind,
    pub method: String,
    pub code: tonic::Code,
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}' failed with gRPC {}: {}",
            self.kind,
            self.method,
            code_name(self.code),
            self.message
        )
    }
}

impl CallError {
    /// NOT_FOUND or UNIMPLEMENTED on a DriverCall (Python: DriverMethodNotImplemented).
    pub fn is_not_implemented(&self) -> bool {
        matches!(self.code, tonic::Code::Unimplemented)
            || (self.code == tonic::Code::NotFound && self.kind == CallKind::DriverCall)
    }
    /// INVALID_ARGUMENT (Python: DriverInvalidArgument, a ValueError).
    pub fn is_invalid_argument(&self) -> bool {
        self.code == tonic::Code::InvalidArgument
    }
    /// FAILED_PRECONDITION (Python: ExporterNotReady).
    pub fn is_not_ready(&self) -> bool {
        self.code == tonic::Code::FailedPrecondition
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The session could not be reached, or did not answer GetReport.
    #[error("Exporter did not respond to initial connection: {0}")]
    Connect(String),
    /// The exporter refused the passphrase (direct mode).
    #[error("Authentication failed: {0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Call(CallError),
    /// The report does not describe a valid tree.
    #[error("invalid driver report: {0}")]
    Report(String),
    /// A result did not have the expected shape.
    #[error("unexpected result from {method}: {detail}")]
    Shape { method: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ClientError {
    pub fn call(kind: CallKind, method: &str, status: tonic::Status) -> ClientError {
        ClientError::Call(CallError {
            kind,
            method: method.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        })
    }

    pub fn shape(method: &str, detail: impl fmt::Display) -> ClientError {
        ClientError::Shape {
            method: method.to_owned(),
            detail: detail.to_string(),
        }
    }

    pub fn as_call(&self) -> Option<&CallError> {
        match self {
            ClientError::Call(c) => Some(c),
            _ => None,
        }
    }
}

/// gRPC status code names as grpc-core spells them (`NOT_FOUND`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
