//! ember's per-node object store.
//!
//! Objects are immutable once sealed. Small objects live inline in daemon
//! memory (`bytes::Bytes`); large ones live in one shared-memory arena file
//! that local client processes map and write in place (create → write →
//! seal), so the daemon never copies them.
//!
//! - [`allocator`]: a pure first/best-fit block allocator over
//!   `[0, capacity)` (4096-byte blocks, coalescing free list) that prefers
//!   warm, already-faulted memory.
//! - [`arena`]: the shared-memory file and its mapping, with bounds-checked
//!   reads and writes.
//! - [`store`]: the object table (`Store`): create/seal/abort, inline puts,
//!   reads, deletes, pins and accounting.
//! - [`flight`]: the Arrow Flight service (`FlightStoreService`) over a
//!   `Store`, so any Flight client can pull and push objects.
//! - [`flight_server`]: the tower service mounted on the node's port:
//!   `do_get` framed by hand so record batch bodies go from shared memory to
//!   the socket without a copy, every other method through tonic.
//! - [`error`]: `StoreError` and its one conversion to `tonic::Status`.

pub mod allocator;
pub mod arena;
pub mod error;
pub mod flight;
pub mod flight_server;
pub mod store;

#[cfg(test)]
mod test_util;

pub use error::StoreError;
pub use flight::FlightStoreService;
pub use flight_server::FlightServer;
pub use store::{
    BlockWriter, ObjectBody, ObjectInfo, PinOutcome, RoomRequest, SpillConfig, Store, StoreConfig,
    StoreStats, StoredObject,
};
