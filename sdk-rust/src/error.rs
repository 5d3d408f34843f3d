//! One error type for everything the SDK does.

use ember_proto::v1::{self, ErrorKind};

/// The language a failed function was written in (from `TaskError.language`).
pub use ember_proto::v1::Language;

/// What went wrong. Failures of remote work arrive as `TaskError` values
/// and map onto the variants by their `ErrorKind`; the rest are local.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The function returned an error (or panicked, or raised in Python).
    #[error("{function} ({language}) failed: {type_name}: {message}", language = language.as_str_name())]
    TaskFailed {
        language: Language,
        /// The error's type (`std::any::type_name` of a Rust error,
        /// `"panic"` for a panic, the exception class in Python).
        type_name: String,
        message: String,
        /// The remote traceback or error chain, as text.
        traceback: String,
        /// The function that failed.
        function: String,
    },
    /// No process serves or exports the function (`function` names it).
    #[error("unknown function {function:?}: {message}")]
    UnknownFunction { function: String, message: String },
    /// The process running the task died and no retry was left.
    #[error("worker crashed: {0}")]
    WorkerCrashed(String),
    /// The task was cancelled.
    #[error("task cancelled: {0}")]
    TaskCancelled(String),
    /// The object's value is gone.
    #[error("object lost: {0}")]
    ObjectLost(String),
    /// The actor is dead.
    #[error("actor died: {0}")]
    ActorDied(String),
    /// No actor (or other named thing) exists under that name
    /// (`get_actor`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is taken (an actor created with a name in use, without
    /// `get_if_exists`).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The node running the task died and no retry was left.
    #[error("node died: {0}")]
    NodeDied(String),
    /// The object store could not make room.
    #[error("object store full: {0}")]
    ObjectStoreFull(String),
    /// A wait ran out of time (`get` with a timeout, `GET_TIMEOUT`).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster token is missing or wrong.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The node refused a malformed request.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another kind of failure reported by the node.
    #[error("{kind}: {message}", kind = kind.as_str_name())]
    Remote { kind: ErrorKind, message: String },
    /// No node could be found or reached, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error a `TaskError` stands for; `function` names the function
    /// when the error does not.
    pub fn from_task_error(err: v1::TaskError, function: Option<&str>) -> Error {
        let kind = ErrorKind::try_from(err.kind).unwrap_or(ErrorKind::Unspecified);
        let function = if err.function_name.is_empty() {
            function.unwrap_or_default().to_string()
        } else {
            err.function_name
        };
        let message = err.message;
        match kind {
            ErrorKind::TaskFailed => Error::TaskFailed {
                language: Language::try_from(err.language).unwrap_or(Language::Unspecified),
                type_name: err.type_name,
                message,
                traceback: err.traceback,
                function,
            },
            ErrorKind::UnknownFunction => Error::UnknownFunction { function, message },
            ErrorKind::WorkerCrashed => Error::WorkerCrashed(message),
            ErrorKind::TaskCancelled => Error::TaskCancelled(message),
            ErrorKind::ObjectLost => Error::ObjectLost(message),
            ErrorKind::ActorDied => Error::ActorDied(message),
            ErrorKind::NotFound => Error::NotFound(message),
            ErrorKind::AlreadyExists => Error::AlreadyExists(message),
            ErrorKind::NodeDied => Error::NodeDied(message),
            ErrorKind::ObjectStoreFull => Error::ObjectStoreFull(message),
            ErrorKind::GetTimeout => Error::Timeout(message),
            ErrorKind::Unauthenticated => Error::Unauthenticated(message),
            ErrorKind::InvalidArgument => Error::InvalidArgument(message),
            other => Error::Remote {
                kind: other,
                message,
            },
        }
    }

    /// The `ErrorKind` this error travels as.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TaskFailed { .. } => ErrorKind::TaskFailed,
            Error::UnknownFunction { .. } => ErrorKind::UnknownFunction,
            Error::WorkerCrashed(_) => ErrorKind::WorkerCrashed,
            Error::TaskCancelled(_) => ErrorKind::TaskCancelled,
            Error::ObjectLost(_) => ErrorKind::ObjectLost,
            Error::ActorDied(_) => ErrorKind::ActorDied,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::NodeDied(_) => ErrorKind::NodeDied,
            Error::ObjectStoreFull(_) => ErrorKind::ObjectStoreFull,
            Error::Timeout(_) => ErrorKind::GetTimeout,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::InvalidArgument(_) | Error::Codec(_) => ErrorKind::InvalidArgument,
            Error::Remote { kind, .. } => *kind,
            Error::Connection(_) => ErrorKind::Internal,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Connection(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for Error {
    /// An Arrow error (building a record batch, reading a stream): a value
    /// that does not encode or decode.
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Codec(format!("arrow: {e}"))
    }
}
