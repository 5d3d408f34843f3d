//! Rust SDK for ember.
//!
//! - [`Client`]: connect to a node (`Client::connect(Options::default())`
//!   finds the local session; `EMBER_ADDRESS`/`EMBER_TOKEN` or
//!   [`Options`] name another), call functions by name in any language
//!   ([`Function::rust`], [`Function::go`], [`Function::python`]) with
//!   serde-typed arguments and results, `put` and `get` objects, `wait`.
//! - [`Worker`]: serve Rust functions by name (`register`, `serve`) and
//!   host actors of Rust classes (`register_actor` + `.method(...)` on
//!   `&mut T`, `.method_shared(...)` on `&T`, which run side by side up to
//!   the actor's `max_concurrency`).
//! - Actors: [`Client::create_actor`] of a [`Class`] of any language,
//!   [`ActorHandle::call`], [`Client::get_actor`], [`Client::kill_actor`].
//! - [`Table`]: an Arrow table, stored and passed as an `ARROW` value (an
//!   Arrow IPC stream; Python reads it as a `pyarrow.Table`);
//!   [`Client::flight_get`] pulls an object's record batches over the
//!   node's Arrow Flight service.
//! - [`codec`]: the canonical msgpack encoding of values.
//! - [`Error`]: every failure, remote ones mapped from their `ErrorKind`.
//!
//! ```no_run
//! use ember::{Client, Function, Options, ServeOptions, Worker};
//!
//! # async fn demo() -> ember::Result<()> {
//! let mut worker = Worker::new();
//! worker.register("add", |a: i64, b: i64| Ok::<_, String>(a + b));
//! let _serving = worker.start(ServeOptions::default()).await?;
//!
//! let client = Client::connect(Options::default()).await?;
//! let sum = client.call::<i64>(&Function::rust("add"), (1, 2)).await?;
//! assert_eq!(sum.get().await?, 3);
//! # Ok(()) }
//! ```

mod actor;
mod client;
pub mod codec;
mod conn;
mod error;
mod host;
mod session;
mod shm;
pub mod table;
mod worker;

pub use actor::{ActorHandle, ActorOptions, Class};
pub use client::{
    Arg, CallOptions, Client, ClientStats, Function, IntoArg, IntoArgs, ObjectRef,
    MAX_REMOTE_PUT_BYTES,
};
pub use conn::NodeInfo;
pub use ember_proto as proto;
pub use ember_proto::v1::ValueFormat;
pub use ember_proto::{ActorId, JobId, NodeId, ObjectId, TaskId, WorkerId};
pub use error::{Error, Language, Result};
pub use host::{ActorClass, Constructor, MethodHandler, SharedMethodHandler};
pub use session::{default_session_root, live_sessions, Options, SessionInfo};
pub use table::Table;
pub use worker::{AsyncHandler, Failure, Outcome, ServeOptions, Serving, SyncHandler, Worker};

/// The Arrow crate of a [`Table`]'s record batches (the version this SDK
/// uses).
pub use arrow_array;
/// The Arrow crate of a [`Table`]'s schema (the version this SDK uses).
pub use arrow_schema;
/// A dynamic msgpack value (any value of any language).
pub use rmpv::Value;
/// Owned bytes that encode as msgpack bin (`bytes` in Python).
pub use serde_bytes::ByteBuf;
