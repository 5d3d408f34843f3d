//! Rust SDK for ember.
//!
//! For now this crate re-exports the wire protocol (`proto`) and typed ids;
//! the async client (`Client::connect`, `call`, `get`, `put`) and the worker
//! runtime (`Worker::register`, `serve`) are built on it in a later issue.

pub use ember_proto as proto;
pub use ember_proto::{ActorId, JobId, NodeId, ObjectId, TaskId, WorkerId};
