//! `StoreError`: every way a store operation can fail, and its one mapping to
//! a gRPC status.

use ember_proto::ObjectId;

use crate::allocator::AllocError;

/// An object-store failure. Sizes are in bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {id} not found")]
    NotFound { id: ObjectId },

    #[error("object {id} already exists")]
    AlreadyExists { id: ObjectId },

    #[error("object {id} is already sealed")]
    AlreadySealed { id: ObjectId },

    /// The request could fit in an empty store, but not now.
    #[error("object store full: requested={requested} capacity={capacity} used={used}")]
    Full {
        requested: u64,
        capacity: u64,
        used: u64,
    },

    /// The request did not fit and spilling other objects to make room
    /// failed (e.g. the spill directory's disk is full).
    #[error(
        "object store full: requested={requested} capacity={capacity} used={used}, \
         and spilling to make room failed: {reason}"
    )]
    SpillFailed {
        requested: u64,
        capacity: u64,
        used: u64,
        reason: String,
    },

    /// The request can never fit, even in an empty store.
    #[error("object larger than the store: requested={requested} capacity={capacity}")]
    TooLarge { requested: u64, capacity: u64 },

    /// A shared-memory object must hold at least one byte (empty values go inline).
    #[error("invalid object size: size={size}, shared-memory objects must be non-empty")]
    InvalidSize { size: u64 },

    /// `seal` was given a location other than the one `create` returned.
    #[error(
        "invalid location for object {id}: expected offset={expected_offset} size={expected_size}, \
         got offset={offset} size={size}"
    )]
    InvalidLocation {
        id: ObjectId,
        expected_offset: u64,
        expected_size: u64,
        offset: u64,
        size: u64,
    },

    /// An arena access outside `[0, capacity)`.
    #[error("arena access out of bounds: offset={offset} len={len} capacity={capacity}")]
    OutOfBounds {
        offset: u64,
        len: u64,
        capacity: u64,
    },

    /// Bytes that should hold a known format do not (e.g. a bad Arrow IPC stream).
    #[error("invalid object data: {0}")]
    InvalidData(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

impl StoreError {
    /// `full` (a `Full` error) made worse by a failed spill.
    pub fn spill_failed(full: StoreError, reason: String) -> Self {
        match full {
            StoreError::Full {
                requested,
                capacity,
                used,
            } => StoreError::SpillFailed {
                requested,
                capacity,
                used,
                reason,
            },
            other => other,
        }
    }
}

impl From<AllocError> for StoreError {
    fn from(error: AllocError) -> Self {
        match error {
            AllocError::ZeroSize => StoreError::InvalidSize { size: 0 },
            AllocError::TooLarge {
                requested,
                capacity,
            } => StoreError::TooLarge {
                requested,
                capacity,
            },
            AllocError::Full {
                requested,
                capacity,
                used,
            } => StoreError::Full {
                requested,
                capacity,
                used,
            },
        }
    }
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::NotFound { .. } => tonic::Status::not_found(message),
            StoreError::AlreadyExists { .. } => tonic::Status::already_exists(message),
            StoreError::AlreadySealed { .. } => tonic::Status::failed_precondition(message),
            StoreError::Full { .. }
            | StoreError::TooLarge { .. }
            | StoreError::SpillFailed { .. } => tonic::Status::resource_exhausted(message),
            StoreError::InvalidSize { .. }
            | StoreError::InvalidLocation { .. }
            | StoreError::OutOfBounds { .. }
            | StoreError::InvalidData(_) => tonic::Status::invalid_argument(message),
            StoreError::Io { .. } => tonic::Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn statuses_carry_codes_and_sizes() {
        let id = ObjectId([7; 20]);
        let status = tonic::Status::from(StoreError::NotFound { id });
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), format!("object {} not found", id.hex()));

        let status = tonic::Status::from(StoreError::Full {
            requested: 10,
            capacity: 20,
            used: 15,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("requested=10"));
        assert!(status.message().contains("used=15"));

        let status = tonic::Status::from(StoreError::TooLarge {
            requested: 30,
            capacity: 20,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("capacity=20"));

        let status = tonic::Status::from(StoreError::AlreadyExists { id });
        assert_eq!(status.code(), Code::AlreadyExists);
        let status = tonic::Status::from(StoreError::InvalidData("bad".into()));
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = tonic::Status::from(StoreError::io("open", std::io::Error::other("boom")));
        assert_eq!(status.code(), Code::Internal);
    }
}
