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
//! - [`error`]: `StoreError` and its one conversion to `tonic::Status`.

pub mod allocator;
pub mod arena;
pub mod error;
pub mod flight;
pub mod store;

#[cfg(test)]
mod test_util;

pub use error::StoreError;
pub use flight::FlightStoreService;
pub use store::{
    BlockWriter, ObjectBody, ObjectInfo, PinOutcome, RoomRequest, SpillConfig, Store, StoreConfig,
    StoreStats, StoredObject,
};
