//! The object table: which objects exist, whether they are sealed, and where
//! their bytes live (inline in daemon memory, a block of the shm arena, or a
//! spill file on local disk).
//!
//! Lifecycle of a large object written by a local client:
//! `create` (allocate an unsealed block) → the client writes into the mapped
//! arena → `seal` (publish it; immutable from now on) → … → `delete`.
//! A client that gives up calls `abort`. Small values go in with
//! `put_inline`; bytes produced inside the daemon with `put_bytes`.
//!
//! Readers outside the daemon get an object's shm location through
//! [`Store::pin_shm`], which pins it: a pinned object is never spilled, so
//! the location stays valid until the matching [`Store::unpin`]. Unpinned
//! objects may be spilled to disk when room is wanted (see [`spill`]) and
//! are brought back by [`Store::restore`].
//!
//! Concurrency: one `std::sync::Mutex` around the table and the allocator,
//! held only for map and free-list updates (never for copies or file IO,
//! never across an await).
//!
//! Memory safety of zero-copy reads: every shm block is owned by an
//! `Arc<ShmLease>`; the table holds one reference, and every `Bytes`
//! returned by [`Store::read`] holds another. The block goes back to the
//! allocator only when the last reference is dropped, so `delete` (or a
//! spill) never pulls memory out from under a reader in this process.

mod spill;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use ember_proto::v1::ShmLocation;
use ember_proto::ObjectId;
use tokio::sync::watch;

use crate::allocator::{Allocator, BLOCK_ALIGN};
use crate::arena::Arena;
use crate::error::StoreError;

pub use spill::SpillConfig;

/// How to build a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The arena file, e.g. `/dev/shm/ember-<session>-arena`. Created (or
    /// truncated) by `Store::new`, its parent directory too; unlinked when
    /// the `Store` is dropped.
    pub arena_path: PathBuf,
    /// Bytes of shared memory for large objects (rounded down to 4096).
    pub capacity: u64,
    /// Bytes of the arena to allocate up front (`fallocate`) so that first
    /// writes find their pages ready; 0 = none.
    pub prefault_bytes: u64,
    /// Where to spill objects when room is wanted; `None` = never spill.
    pub spill: Option<SpillConfig>,
}

/// Where a sealed object's data lives.
#[derive(Clone, Debug)]
pub enum ObjectBody {
    Inline(Bytes),
    Shm(ShmLocation),
    /// Only on disk: [`Store::restore`] brings it back into shared memory,
    /// [`Store::load`] reads it without doing so.
    Spilled,
}

/// A sealed object's table entry (cheap to clone).
#[derive(Clone, Debug)]
pub struct StoredObject {
    /// An `ember_proto::v1::ValueFormat` value.
    pub format: i32,
    /// The format-specific header (for PICKLE, the out-of-band buffer table).
    pub metadata: Bytes,
    pub body: ObjectBody,
    /// Data bytes (excluding metadata).
    pub size: u64,
}

/// One sealed object, as listed by [`Store::list`].
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub format: i32,
    pub size: u64,
    pub in_shm: bool,
    pub spilled: bool,
}

/// Store-wide accounting.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// Usable arena bytes.
    pub capacity: u64,
    /// Arena bytes allocated (rounded to 4096), including unsealed blocks and
    /// deleted blocks still borrowed by a zero-copy `read`.
    pub used: u64,
    /// Data bytes of inline objects.
    pub inline_bytes: u64,
    /// Sealed objects (inline, shm and spilled).
    pub num_objects: u64,
    /// Blocks created but not yet sealed.
    pub num_unsealed: u64,
    /// Data bytes of objects whose only copy is on disk.
    pub spilled_bytes: u64,
    /// Objects whose only copy is on disk.
    pub num_spilled: u64,
    /// Bytes written to spill files since the store started.
    pub total_spilled_bytes: u64,
    /// Bytes read back from spill files into shared memory since the start.
    pub total_restored_bytes: u64,
}

/// What [`Store::pin_shm`] found.
#[derive(Clone, Debug)]
pub enum PinOutcome {
    /// In shared memory, now pinned (body `Shm`): unpin it when done.
    Pinned(StoredObject),
    /// Inline: nothing to pin, here is the value.
    Inline(StoredObject),
    /// On disk (or being restored): restore it first.
    Spilled,
    /// Absent or unsealed.
    Missing,
}

/// The per-node object store. `Send + Sync`; share it as `Arc<Store>`.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    /// The spill thread, joined when the store is dropped.
    spiller: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the store, its leases, its readers and its spill thread share.
#[derive(Debug)]
struct Shared {
    arena: Arena,
    state: Mutex<State>,
    /// Wakes the spill thread: room wanted, an object unpinned, shutdown.
    spill_wakeup: Condvar,
    /// Bumped whenever memory is freed or an object is spilled or restored,
    /// so that waiters for room or for a restore look again.
    changes: watch::Sender<u64>,
    spill: Option<SpillConfig>,
}

impl Shared {
    /// Lock the state. A poisoned lock is recovered: no critical section
    /// leaves the state half-updated on a panic worth propagating.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Object ids are random bytes: foldhash, not SipHash.
type ObjectMap<V> = HashMap<ObjectId, V, foldhash::fast::RandomState>;

#[derive(Debug)]
struct State {
    objects: ObjectMap<Entry>,
    allocator: Allocator,
    inline_bytes: u64,
    num_sealed: u64,
    num_unsealed: u64,
    /// Logical clock for `Entry::last_use`.
    clock: u64,
    spilled_bytes: u64,
    num_spilled: u64,
    total_spilled_bytes: u64,
    total_restored_bytes: u64,
    /// Sizes of allocations waiting for room (size → how many).
    room_wanted: BTreeMap<u64, usize>,
    /// Spilling found nothing to do, or failed: it waits for a change
    /// (a new request for room, an unpin, a seal, a delete) before trying again.
    spill_idle: bool,
    /// Failed spill attempts so far, and the last failure's message.
    spill_failures: u64,
    last_spill_failure: String,
    /// Spill files of deleted objects, unlinked by the spill thread.
    to_unlink: Vec<PathBuf>,
    shutdown: bool,
}

#[derive(Debug)]
struct Entry {
    /// For an unsealed entry: format 0, empty metadata, `Shm` body.
    object: StoredObject,
    sealed: bool,
    /// Pinned by a user (Flight `pin` action): never spilled.
    pinned: bool,
    /// Outstanding `pin_shm` pins: readers holding its shm location.
    pins: u32,
    /// Present for shm objects: keeps the block allocated.
    lease: Option<Arc<ShmLease>>,
    /// A copy of the data exists in the spill directory.
    on_disk: bool,
    busy: Busy,
    /// `State::clock` at its last seal, pin or restore (least recent spills first).
    last_use: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    Idle,
    /// Being written to disk by the spill thread.
    Spilling,
    /// Being read back into shared memory.
    Restoring,
}

/// Ownership of one allocated arena block; frees it when the last reference
/// (table entry or zero-copy reader) is dropped.
///
/// Invariant: never dropped while the state lock is held by the dropping
/// thread (removed entries are dropped after the lock is released).
#[derive(Debug)]
struct ShmLease {
    block_offset: u64,
    /// Weak: the table holds leases, so a strong reference would be a cycle.
    /// When the store itself is gone there is nothing left to free into.
    shared: Weak<Shared>,
}

impl Drop for ShmLease {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let freed = shared.lock().allocator.free(self.block_offset);
            debug_assert!(freed.is_some(), "double free of arena block");
            shared.changed();
        }
    }
}

/// The owner behind a zero-copy `Bytes` from [`Store::read`].
struct ShmView {
    // Field order matters: the lease is dropped (and may free the block)
    // while `shared` still keeps the mapping alive.
    _lease: Arc<ShmLease>,
    shared: Arc<Shared>,
    offset: u64,
    len: u64,
}

impl AsRef<[u8]> for ShmView {
    fn as_ref(&self) -> &[u8] {
        // The range was checked against the block when the object was sealed,
        // so this cannot fail; an empty slice is the safe fallback.
        self.shared
            .arena
            .slice(self.offset, self.len)
            .unwrap_or(&[])
    }
}

/// A wish for `size` bytes of room, registered with [`Store::request_room`]:
/// the spill thread makes room while it lives. Dropping it withdraws it.
#[derive(Debug)]
pub struct RoomRequest {
    size: u64,
    shared: Weak<Shared>,
}

impl Drop for RoomRequest {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut state = shared.lock();
            if let Some(n) = state.room_wanted.get_mut(&self.size) {
                *n -= 1;
                if *n == 0 {
                    state.room_wanted.remove(&self.size);
                }
            }
        }
    }
}

impl Store {
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        let capacity = config.capacity & !(BLOCK_ALIGN - 1);
        let arena = Arena::create(&config.arena_path, capacity, config.prefault_bytes)?;
        if let Some(spill) = &config.spill {
            spill.prepare()?;
        }
        let state = State::new(capacity);
        tracing::debug!(path = %config.arena_path.display(), capacity, "object store created");
        let shared = Arc::new(Shared {
            arena,
            state: Mutex::new(state),
            spill_wakeup: Condvar::new(),
            changes: watch::Sender::new(0),
            spill: config.spill,
        });
        let spiller = match &shared.spill {
            Some(_) => Some(spill::start(shared.clone())?),
            None => None,
        };
        Ok(Store {
            shared,
            spiller: Mutex::new(spiller),
        })
    }

    pub fn arena_path(&self) -> &Path {
        self.shared.arena.path()
    }

    /// Usable arena bytes (the configured capacity rounded down to 4096).
    pub fn capacity(&self) -> u64 {
        self.shared.arena.capacity()
    }

    /// The spill directory, when spilling is on.
    pub fn spill_dir(&self) -> Option<&Path> {
        self.shared.spill.as_ref().map(|s| s.dir.as_path())
    }

    /// A receiver that sees a new value whenever memory was freed or an
    /// object was spilled or restored.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Allocate an unsealed shm block of `size` (> 0) bytes for `id`.
    pub fn create(&self, id: ObjectId, size: u64) -> Result<ShmLocation, StoreError> {
        self.create_leased(id, size).map(|(location, _)| location)
    }

    /// An unsealed block of `size` bytes for `id`, filled with
    /// [`BlockWriter::write`] and sealed with [`BlockWriter::finish`].
    pub fn writer(&self, id: ObjectId, size: u64) -> Result<BlockWriter, StoreError> {
        let (location, lease) = self.create_leased(id, size)?;
        Ok(BlockWriter {
            shared: self.shared.clone(),
            id,
            location,
            lease: Some(lease),
            written: 0,
        })
    }

    /// `create`, also returning the block's lease so that a writer inside the
    /// daemon keeps the block even if the entry is aborted meanwhile.
    fn create_leased(
        &self,
        id: ObjectId,
        size: u64,
    ) -> Result<(ShmLocation, Arc<ShmLease>), StoreError> {
        let mut state = self.shared.lock();
        if state.objects.contains_key(&id) {
            return Err(StoreError::AlreadyExists { id });
        }
        let block = state.allocator.allocate(size).map_err(StoreError::from)?;
        let location = ShmLocation {
            offset: block.offset,
            size,
        };
        let lease = Arc::new(ShmLease {
            block_offset: block.offset,
            shared: Arc::downgrade(&self.shared),
        });
        let entry = Entry::new(
            StoredObject {
                format: 0,
                metadata: Bytes::new(),
                body: ObjectBody::Shm(location),
                size,
            },
            Some(lease.clone()),
        );
        state.objects.insert(id, entry);
        state.num_unsealed += 1;
        Ok((location, lease))
    }

    /// Seal a block made by `create`; `location` must equal what `create`
    /// returned. From now on the object is immutable and readable.
    pub fn seal(
        &self,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        location: ShmLocation,
    ) -> Result<(), StoreError> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        state.clock += 1;
        let entry = state
            .objects
            .get_mut(&id)
            .ok_or(StoreError::NotFound { id })?;
        if entry.sealed {
            return Err(StoreError::AlreadySealed { id });
        }
        let expected = match &entry.object.body {
            ObjectBody::Shm(expected) => *expected,
            // Unsealed entries are always shm; keep the compiler honest.
            _ => return Err(StoreError::AlreadySealed { id }),
        };
        if expected != location {
            return Err(StoreError::InvalidLocation {
                id,
                expected_offset: expected.offset,
                expected_size: expected.size,
                offset: location.offset,
                size: location.size,
            });
        }
        entry.object.format = format;
        entry.object.metadata = metadata;
        entry.sealed = true;
        entry.last_use = state.clock;
        state.num_unsealed -= 1;
        state.num_sealed += 1;
        self.wake_spiller(state);
        Ok(())
    }

    /// Free an unsealed block (the client gave up). No-op if `id` is unknown
    /// or already sealed.
    pub fn abort(&self, id: ObjectId) {
        let removed = {
            let mut state = self.shared.lock();
            match state.objects.get(&id) {
                Some(entry) if !entry.sealed => state.remove(&id, self.shared.spill.as_ref()),
                _ => None,
            }
        };
        drop(removed); // outside the lock: may free the block
    }

    /// Store a small value inline, sealed at once.
    pub fn put_inline(
        &self,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        data: Bytes,
    ) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if state.objects.contains_key(&id) {
            return Err(StoreError::AlreadyExists { id });
        }
        let size = data.len() as u64;
        let mut entry = Entry::new(
            StoredObject {
                format,
                metadata,
                body: ObjectBody::Inline(data),
                size,
            },
            None,
        );
        entry.sealed = true;
        state.objects.insert(id, entry);
        state.inline_bytes += size;
        state.num_sealed += 1;
        Ok(())
    }

    /// Store bytes produced inside the daemon: inline (copied into a `Bytes`)
    /// if `data.len() <= inline_threshold` or empty, else allocate, copy into
    /// the arena and seal. The copy happens outside the lock, but it is a
    /// memcpy of `data.len()` bytes: call from `spawn_blocking` when large.
    pub fn put_bytes(
        &self,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        data: &[u8],
        inline_threshold: usize,
    ) -> Result<(), StoreError> {
        if data.len() <= inline_threshold || data.is_empty() {
            return self.put_inline(id, format, metadata, Bytes::copy_from_slice(data));
        }
        let created = self.create_leased(id, data.len() as u64)?;
        self.fill_and_seal(id, format, metadata, data, created)
    }

    /// Write `data` into a block made by `create_leased`, then seal it.
    fn fill_and_seal(
        &self,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        data: &[u8],
        (location, lease): (ShmLocation, Arc<ShmLease>),
    ) -> Result<(), StoreError> {
        let written = self.shared.arena.write_at(location.offset, data);
        drop(lease);
        if let Err(error) = written {
            self.abort(id);
            return Err(error);
        }
        self.seal(id, format, metadata, location)
    }

    /// A sealed object's entry, or `None` if absent or unsealed.
    pub fn get(&self, id: &ObjectId) -> Option<StoredObject> {
        let state = self.shared.lock();
        state
            .objects
            .get(id)
            .filter(|entry| entry.sealed)
            .map(|entry| entry.object.clone())
    }

    /// Whether a sealed object `id` exists (in memory or on disk).
    pub fn contains(&self, id: &ObjectId) -> bool {
        let state = self.shared.lock();
        state.objects.get(id).is_some_and(|entry| entry.sealed)
    }

    /// Whether `id` exists and its data is only on disk (or being restored).
    pub fn is_spilled(&self, id: &ObjectId) -> bool {
        let state = self.shared.lock();
        state
            .objects
            .get(id)
            .is_some_and(|entry| matches!(entry.object.body, ObjectBody::Spilled))
    }

    /// A sealed object's data bytes, without copying: inline objects return
    /// their `Bytes`; shm objects a `Bytes` that borrows the mapping and keeps
    /// the block allocated (even across `delete`) until it is dropped.
    /// `None` if absent, unsealed or spilled (see [`Store::load`]).
    pub fn read(&self, id: &ObjectId) -> Option<Bytes> {
        let (body, lease) = {
            let state = self.shared.lock();
            let entry = state.objects.get(id).filter(|entry| entry.sealed)?;
            (entry.object.body.clone(), entry.lease.clone())
        };
        match body {
            ObjectBody::Inline(data) => Some(data),
            ObjectBody::Shm(location) => {
                let view = ShmView {
                    _lease: lease?,
                    shared: self.shared.clone(),
                    offset: location.offset,
                    len: location.size,
                };
                Some(Bytes::from_owner(view))
            }
            ObjectBody::Spilled => None,
        }
    }

    /// Pin a sealed shm object so it is not spilled while a reader outside
    /// the daemon uses its location; see [`PinOutcome`].
    pub fn pin_shm(&self, id: &ObjectId) -> PinOutcome {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        state.clock += 1;
        let Some(entry) = state.objects.get_mut(id).filter(|entry| entry.sealed) else {
            return PinOutcome::Missing;
        };
        match entry.object.body {
            ObjectBody::Inline(_) => PinOutcome::Inline(entry.object.clone()),
            ObjectBody::Spilled => PinOutcome::Spilled,
            ObjectBody::Shm(_) => {
                entry.pins += 1;
                entry.last_use = state.clock;
                PinOutcome::Pinned(entry.object.clone())
            }
        }
    }

    /// Give back one pin taken by [`Store::pin_shm`].
    pub fn unpin(&self, id: &ObjectId) {
        let mut state = self.shared.lock();
        let Some(entry) = state.objects.get_mut(id) else {
            return;
        };
        debug_assert!(entry.pins > 0, "unpin of an object without pins");
        entry.pins = entry.pins.saturating_sub(1);
        if entry.pins == 0 {
            self.wake_spiller(&mut state);
        }
    }

    /// Outstanding `pin_shm` pins of `id` (0 if absent).
    pub fn pins(&self, id: &ObjectId) -> u32 {
        let state = self.shared.lock();
        state.objects.get(id).map_or(0, |entry| entry.pins)
    }

    /// Remove a sealed or unsealed object. Its shm block is freed once no
    /// zero-copy reader holds it; its spill file is removed. Returns whether
    /// it existed.
    pub fn delete(&self, id: &ObjectId) -> bool {
        let removed = {
            let mut state = self.shared.lock();
            let removed = state.remove(id, self.shared.spill.as_ref());
            if removed.as_ref().is_some_and(|e| e.on_disk) {
                self.wake_spiller(&mut state);
            }
            removed
        };
        let existed = removed.is_some();
        drop(removed); // outside the lock: may free the block
        existed
    }

    /// Mark or unmark an object (sealed or not) as pinned by a user: a
    /// pinned object is never spilled.
    pub fn set_pinned(&self, id: &ObjectId, pinned: bool) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        let entry = state
            .objects
            .get_mut(id)
            .ok_or(StoreError::NotFound { id: *id })?;
        entry.pinned = pinned;
        if !pinned {
            self.wake_spiller(&mut state);
        }
        Ok(())
    }

    /// Whether `id` exists and is pinned.
    pub fn is_pinned(&self, id: &ObjectId) -> bool {
        let state = self.shared.lock();
        state.objects.get(id).is_some_and(|entry| entry.pinned)
    }

    pub fn stats(&self) -> StoreStats {
        let state = self.shared.lock();
        StoreStats {
            capacity: state.allocator.capacity(),
            used: state.allocator.used(),
            inline_bytes: state.inline_bytes,
            num_objects: state.num_sealed,
            num_unsealed: state.num_unsealed,
            spilled_bytes: state.spilled_bytes,
            num_spilled: state.num_spilled,
            total_spilled_bytes: state.total_spilled_bytes,
            total_restored_bytes: state.total_restored_bytes,
        }
    }

    /// Every sealed object, in no particular order.
    pub fn list(&self) -> Vec<ObjectInfo> {
        let state = self.shared.lock();
        state
            .objects
            .iter()
            .filter(|(_, entry)| entry.sealed)
            .map(|(id, entry)| ObjectInfo {
                id: *id,
                format: entry.object.format,
                size: entry.object.size,
                in_shm: matches!(entry.object.body, ObjectBody::Shm(_)),
                spilled: matches!(entry.object.body, ObjectBody::Spilled),
            })
            .collect()
    }

    /// Tell the spill thread that something it waits for may have changed.
    fn wake_spiller(&self, state: &mut State) {
        if self.shared.spill.is_some() {
            state.spill_idle = false;
            self.shared.spill_wakeup.notify_one();
        }
    }
}

/// An unsealed block being filled in pieces by the daemon (an object
/// copied from another node): `write` appends, `finish` seals. Dropped
/// unfinished, the block is given back.
pub struct BlockWriter {
    shared: Arc<Shared>,
    id: ObjectId,
    location: ShmLocation,
    lease: Option<Arc<ShmLease>>,
    written: u64,
}

impl BlockWriter {
    /// Append `data` (a memcpy into the arena).
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let end = self.written + data.len() as u64;
        if end > self.location.size {
            return Err(StoreError::InvalidData(format!(
                "object {}: {end} bytes written into a block of {}",
                self.id, self.location.size
            )));
        }
        self.shared
            .arena
            .write_at(self.location.offset + self.written, data)?;
        self.written = end;
        Ok(())
    }

    /// Seal the block as the object (every byte must have been written).
    /// Hand the filled block over unsealed (its location), for a client's
    /// `PutObject{shm}` to seal, as if the client had written it; the block
    /// is no longer given back when this writer is dropped.
    pub fn into_unsealed(mut self) -> Result<ShmLocation, StoreError> {
        if self.written != self.location.size {
            return Err(StoreError::InvalidData(format!(
                "object {}: {} of {} bytes written",
                self.id, self.written, self.location.size
            )));
        }
        self.lease = None;
        self.written = u64::MAX;
        Ok(self.location)
    }

    pub fn finish(mut self, store: &Store, format: i32, metadata: Bytes) -> Result<(), StoreError> {
        if self.written != self.location.size {
            return Err(StoreError::InvalidData(format!(
                "object {}: {} of {} bytes written",
                self.id, self.written, self.location.size
            )));
        }
        self.lease = None;
        let (id, location) = (self.id, self.location);
        self.written = u64::MAX; // sealed: nothing to give back on drop
        store.seal(id, format, metadata, location)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if self.written == u64::MAX {
            return;
        }
        drop(self.lease.take());
        let removed = {
            let mut state = self.shared.lock();
            match state.objects.get(&self.id) {
                Some(entry) if !entry.sealed => state.remove(&self.id, self.shared.spill.as_ref()),
                _ => None,
            }
        };
        drop(removed);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.spill_wakeup.notify_all();
        let handle = self
            .spiller
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Entry {
    fn new(object: StoredObject, lease: Option<Arc<ShmLease>>) -> Entry {
        Entry {
            object,
            sealed: false,
            pinned: false,
            pins: 0,
            lease,
            on_disk: false,
            busy: Busy::Idle,
            last_use: 0,
        }
    }
}

impl State {
    fn new(capacity: u64) -> State {
        State {
            objects: ObjectMap::default(),
            allocator: Allocator::new(capacity),
            inline_bytes: 0,
            num_sealed: 0,
            num_unsealed: 0,
            clock: 0,
            spilled_bytes: 0,
            num_spilled: 0,
            total_spilled_bytes: 0,
            total_restored_bytes: 0,
            room_wanted: BTreeMap::new(),
            spill_idle: false,
            spill_failures: 0,
            last_spill_failure: String::new(),
            to_unlink: Vec::new(),
            shutdown: false,
        }
    }

    /// Take an entry out of the table, updating the counters and queueing
    /// its spill file for removal. The caller must drop the result after
    /// releasing the lock (it may hold the last lease).
    #[must_use]
    fn remove(&mut self, id: &ObjectId, spill: Option<&SpillConfig>) -> Option<Entry> {
        let entry = self.objects.remove(id)?;
        if entry.sealed {
            self.num_sealed -= 1;
        } else {
            self.num_unsealed -= 1;
        }
        match &entry.object.body {
            ObjectBody::Inline(data) => self.inline_bytes -= data.len() as u64,
            ObjectBody::Spilled => {
                self.spilled_bytes -= entry.object.size;
                self.num_spilled -= 1;
            }
            ObjectBody::Shm(_) => {}
        }
        if entry.on_disk {
            if let Some(spill) = spill {
                self.to_unlink.push(spill.file_of(id));
            }
        }
        Some(entry)
    }
}
