//! ember's wire contract.
//!
//! - [`v1`]: the protobuf messages and gRPC services generated from
//!   `proto/ember/v1/*.proto` by `scripts/gen-proto.sh` (committed; do not edit).
//! - [`ids`]: typed ids (`TaskId`, `ObjectId`, `NodeId`, `WorkerId`, `JobId`,
//!   `ActorId`) with their byte layouts, checked when decoded from the wire.
//! - [`frame`]: the length-prefixed framing of the local Unix-socket stream.
//! - [`local_socket`]: that stream's socket, read through tokio's reactor.

pub mod frame;
pub mod ids;
pub mod local_socket;

/// Generated protocol code for package `ember.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!("gen/ember.v1.rs");
}

pub use ids::{ActorId, IdError, JobId, NodeId, ObjectId, TaskId, WorkerId};
