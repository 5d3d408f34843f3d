//! `NodeError`: what the node daemon reports to its callers, and its one
//! conversion to `tonic::Status`.

use ember_proto::v1::{ErrorKind, TaskError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("object store full: {0}")]
    StoreFull(String),
    #[error("{0}")]
    Store(#[from] ember_flight_store::StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl NodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            NodeError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            NodeError::StoreFull(_) => ErrorKind::ObjectStoreFull,
            NodeError::Store(e) => match e {
                ember_flight_store::StoreError::Full { .. }
                | ember_flight_store::StoreError::TooLarge { .. } => ErrorKind::ObjectStoreFull,
                _ => ErrorKind::InvalidArgument,
            },
            NodeError::Io(_) | NodeError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The error as the wire's `TaskError`.
    pub fn to_task_error(&self) -> TaskError {
        TaskError {
            kind: self.kind() as i32,
            type_name: format!("{:?}", self.kind()),
            message: self.to_string(),
            ..Default::default()
        }
    }
}

impl From<NodeError> for tonic::Status {
    fn from(err: NodeError) -> Self {
        match err {
            NodeError::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            NodeError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            NodeError::StoreFull(m) => tonic::Status::resource_exhausted(m),
            NodeError::Store(e) => e.into(),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
