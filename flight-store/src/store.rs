//! The object table: which objects exist, whether they are sealed, and where
//! their bytes live (inline in daemon memory, or a block of the shm arena).
//!
//! Lifecycle of a large object written by a local client:
//! `create` (allocate an unsealed block) → the client writes into the mapped
//! arena → `seal` (publish it; immutable from now on) → … → `delete`.
//! A client that gives up calls `abort`. Small values go in with
//! `put_inline`; bytes produced inside the daemon with `put_bytes`.
//!
//! Concurrency: one `std::sync::Mutex` around the table and the allocator,
//! held only for map and free-list updates (never for copies, never across
//! an await).
//!
//! Memory safety of zero-copy reads: every shm block is owned by an
//! `Arc<ShmLease>`; the table holds one reference, and every `Bytes`
//! returned by [`Store::read`] holds another. The block goes back to the
//! allocator only when the last reference is dropped, so `delete` never
//! pulls memory out from under a reader in this process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use ember_proto::v1::ShmLocation;
use ember_proto::ObjectId;

use crate::allocator::{Allocator, BLOCK_ALIGN};
use crate::arena::Arena;
use crate::error::StoreError;

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
}

/// Where a sealed object's data lives.
#[derive(Clone, Debug)]
pub enum ObjectBody {
    Inline(Bytes),
    Shm(ShmLocation),
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
    /// Sealed objects (inline and shm).
    pub num_objects: u64,
    /// Blocks created but not yet sealed.
    pub num_unsealed: u64,
}

/// The per-node object store. `Send + Sync`; share it as `Arc<Store>`.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What the store, its leases and its readers share.
#[derive(Debug)]
struct Shared {
    arena: Arena,
    state: Mutex<State>,
}

impl Shared {
    /// Lock the state. A poisoned lock is recovered: no critical section
    /// leaves the state half-updated on a panic worth propagating.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct State {
    objects: HashMap<ObjectId, Entry>,
    allocator: Allocator,
    inline_bytes: u64,
    num_sealed: u64,
    num_unsealed: u64,
}

#[derive(Debug)]
struct Entry {
    /// For an unsealed entry: format 0, empty metadata, `Shm` body.
    object: StoredObject,
    sealed: bool,
    pinned: bool,
    /// Present for shm objects: keeps the block allocated.
    lease: Option<Arc<ShmLease>>,
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

impl Store {
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        let capacity = config.capacity & !(BLOCK_ALIGN - 1);
        let arena = Arena::create(&config.arena_path, capacity, config.prefault_bytes)?;
        let state = State {
            objects: HashMap::new(),
            allocator: Allocator::new(capacity),
            inline_bytes: 0,
            num_sealed: 0,
            num_unsealed: 0,
        };
        tracing::debug!(path = %config.arena_path.display(), capacity, "object store created");
        Ok(Store {
            shared: Arc::new(Shared {
                arena,
                state: Mutex::new(state),
            }),
        })
    }

    pub fn arena_path(&self) -> &Path {
        self.shared.arena.path()
    }

    /// Usable arena bytes (the configured capacity rounded down to 4096).
    pub fn capacity(&self) -> u64 {
        self.shared.arena.capacity()
    }

    /// Allocate an unsealed shm block of `size` (> 0) bytes for `id`.
    pub fn create(&self, id: ObjectId, size: u64) -> Result<ShmLocation, StoreError> {
        self.create_leased(id, size).map(|(location, _)| location)
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
        state.objects.insert(
            id,
            Entry {
                object: StoredObject {
                    format: 0,
                    metadata: Bytes::new(),
                    body: ObjectBody::Shm(location),
                    size,
                },
                sealed: false,
                pinned: false,
                lease: Some(lease.clone()),
            },
        );
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
            ObjectBody::Inline(_) => return Err(StoreError::AlreadySealed { id }),
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
        state.num_unsealed -= 1;
        state.num_sealed += 1;
        Ok(())
    }

    /// Free an unsealed block (the client gave up). No-op if `id` is unknown
    /// or already sealed.
    pub fn abort(&self, id: ObjectId) {
        let removed = {
            let mut state = self.shared.lock();
            match state.objects.get(&id) {
                Some(entry) if !entry.sealed => state.remove(&id),
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
        state.objects.insert(
            id,
            Entry {
                object: StoredObject {
                    format,
                    metadata,
                    body: ObjectBody::Inline(data),
                    size,
                },
                sealed: true,
                pinned: false,
                lease: None,
            },
        );
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
        let (location, lease) = self.create_leased(id, data.len() as u64)?;
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

    /// Whether a sealed object `id` exists.
    pub fn contains(&self, id: &ObjectId) -> bool {
        let state = self.shared.lock();
        state.objects.get(id).is_some_and(|entry| entry.sealed)
    }

    /// A sealed object's data bytes, without copying: inline objects return
    /// their `Bytes`; shm objects a `Bytes` that borrows the mapping and keeps
    /// the block allocated (even across `delete`) until it is dropped.
    /// `None` if absent or unsealed.
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
        }
    }

    /// Remove a sealed or unsealed object. Its shm block is freed once no
    /// zero-copy reader holds it. Returns whether it existed.
    pub fn delete(&self, id: &ObjectId) -> bool {
        let removed = self.shared.lock().remove(id);
        let existed = removed.is_some();
        drop(removed); // outside the lock: may free the block
        existed
    }

    /// Mark or unmark an object (sealed or not) as pinned. The store only
    /// records the flag; eviction and spilling policy is the daemon's.
    pub fn set_pinned(&self, id: &ObjectId, pinned: bool) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        let entry = state
            .objects
            .get_mut(id)
            .ok_or(StoreError::NotFound { id: *id })?;
        entry.pinned = pinned;
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
            })
            .collect()
    }
}

impl State {
    /// Take an entry out of the table, updating the counters. The caller must
    /// drop the result after releasing the lock (it may hold the last lease).
    #[must_use]
    fn remove(&mut self, id: &ObjectId) -> Option<Entry> {
        let entry = self.objects.remove(id)?;
        if entry.sealed {
            self.num_sealed -= 1;
        } else {
            self.num_unsealed -= 1;
        }
        if let ObjectBody::Inline(data) = &entry.object.body {
            self.inline_bytes -= data.len() as u64;
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;
    use ember_proto::v1::ValueFormat;

    const RAW: i32 = ValueFormat::Raw as i32;
    const KB: u64 = 1024;

    fn new_store(dir: &tempfile::TempDir, capacity: u64) -> Store {
        Store::new(StoreConfig {
            arena_path: dir.path().join("arena"),
            capacity,
            prefault_bytes: 0,
        })
        .unwrap()
    }

    /// Write `data` into a created block the way a client process would:
    /// through its own mapping of the arena file.
    fn client_write(store: &Store, location: ShmLocation, data: &[u8]) {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(store.arena_path())
            .unwrap();
        file.seek(SeekFrom::Start(location.offset)).unwrap();
        file.write_all(data).unwrap();
    }

    #[test]
    fn create_write_seal_get_read_delete_round_trip() {
        let dir = temp_dir();
        let store = new_store(&dir, 1 << 20);
        let id = ObjectId::random();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let location = store.create(id, data.len() as u64).unwrap();
        assert_eq!(location.size, data.len() as u64);
        assert_eq!(location.offset % 4096, 0);
        assert!(store.get(&id).is_none(), "unsealed objects are invisible");
        assert!(!store.contains(&id));
        assert!(store.read(&id).is_none());

        client_write(&store, location, &data);
        store
            .seal(id, RAW, Bytes::from_static(b"meta"), location)
            .unwrap();
        let object = store.get(&id).unwrap();
        assert_eq!(object.format, RAW);
        assert_eq!(object.metadata, Bytes::from_static(b"meta"));
        assert_eq!(object.size, data.len() as u64);
        assert!(matches!(object.body, ObjectBody::Shm(l) if l == location));
        assert!(store.contains(&id));
        assert_eq!(store.read(&id).unwrap(), data);

        assert!(store.delete(&id));
        assert!(!store.delete(&id));
        assert!(store.get(&id).is_none());
        assert_eq!(store.stats().used, 0);
    }

    #[test]
    fn full_and_too_large_are_distinct() {
        let dir = temp_dir();
        let store = new_store(&dir, 64 * KB);
        match store.create(ObjectId::random(), 65 * KB) {
            Err(StoreError::TooLarge {
                requested,
                capacity,
            }) => assert_eq!((requested, capacity), (65 * KB, 64 * KB)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        store.create(ObjectId::random(), 40 * KB).unwrap();
        match store.create(ObjectId::random(), 40 * KB) {
            Err(StoreError::Full {
                requested,
                capacity,
                used,
            }) => assert_eq!((requested, capacity, used), (40 * KB, 64 * KB, 40 * KB)),
            other => panic!("expected Full, got {other:?}"),
        }
        assert!(matches!(
            store.create(ObjectId::random(), 0),
            Err(StoreError::InvalidSize { size: 0 })
        ));
    }

    #[test]
    fn seal_errors() {
        let dir = temp_dir();
        let store = new_store(&dir, 1 << 20);
        let id = ObjectId::random();
        let bogus = ShmLocation {
            offset: 0,
            size: 10,
        };
        assert!(matches!(
            store.seal(id, RAW, Bytes::new(), bogus),
            Err(StoreError::NotFound { .. })
        ));
        let location = store.create(id, 100).unwrap();
        assert!(matches!(
            store.create(id, 100),
            Err(StoreError::AlreadyExists { .. })
        ));
        let wrong = ShmLocation {
            offset: location.offset,
            size: 99,
        };
        assert!(matches!(
            store.seal(id, RAW, Bytes::new(), wrong),
            Err(StoreError::InvalidLocation {
                expected_size: 100,
                size: 99,
                ..
            })
        ));
        store.seal(id, RAW, Bytes::new(), location).unwrap();
        assert!(matches!(
            store.seal(id, RAW, Bytes::new(), location),
            Err(StoreError::AlreadySealed { .. })
        ));
        let inline = ObjectId::random();
        store
            .put_inline(inline, RAW, Bytes::new(), Bytes::from_static(b"x"))
            .unwrap();
        assert!(matches!(
            store.seal(inline, RAW, Bytes::new(), location),
            Err(StoreError::AlreadySealed { .. })
        ));
    }

    #[test]
    fn abort_frees_unsealed_blocks_only() {
        let dir = temp_dir();
        let store = new_store(&dir, 1 << 20);
        let id = ObjectId::random();
        store.create(id, 5000).unwrap();
        assert_eq!(store.stats().num_unsealed, 1);
        assert_eq!(store.stats().used, 8192);
        store.abort(id);
        store.abort(id); // unknown: no-op
        assert_eq!(store.stats().num_unsealed, 0);
        assert_eq!(store.stats().used, 0);

        let sealed = ObjectId::random();
        let location = store.create(sealed, 10).unwrap();
        store.seal(sealed, RAW, Bytes::new(), location).unwrap();
        store.abort(sealed);
        assert!(store.contains(&sealed), "abort leaves sealed objects alone");
    }

    #[test]
    fn stats_accounting() {
        let dir = temp_dir();
        let store = new_store(&dir, (1 << 20) + 100);
        assert_eq!(store.capacity(), 1 << 20);
        let (a, b, c) = (ObjectId::random(), ObjectId::random(), ObjectId::random());
        store
            .put_inline(a, RAW, Bytes::new(), Bytes::from_static(b"hello"))
            .unwrap();
        let location = store.create(b, 4097).unwrap();
        store.create(c, 1).unwrap();
        let stats = store.stats();
        assert_eq!(stats.capacity, 1 << 20);
        assert_eq!(stats.used, 3 * 4096);
        assert_eq!(stats.inline_bytes, 5);
        assert_eq!(stats.num_objects, 1);
        assert_eq!(stats.num_unsealed, 2);
        store.seal(b, RAW, Bytes::new(), location).unwrap();
        assert!(store.delete(&c));
        assert!(store.delete(&a));
        let stats = store.stats();
        assert_eq!(stats.used, 2 * 4096);
        assert_eq!(stats.inline_bytes, 0);
        assert_eq!(stats.num_objects, 1);
        assert_eq!(stats.num_unsealed, 0);
        let listed = store.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, b);
        assert!(listed[0].in_shm);
        assert_eq!(listed[0].size, 4097);
    }

    #[test]
    fn put_bytes_goes_inline_or_to_shm_by_threshold() {
        let dir = temp_dir();
        let store = new_store(&dir, 1 << 20);
        let small = ObjectId::random();
        let large = ObjectId::random();
        let empty = ObjectId::random();
        let big_data = vec![42u8; 200_000];
        store
            .put_bytes(small, RAW, Bytes::new(), b"tiny", 100)
            .unwrap();
        store
            .put_bytes(large, RAW, Bytes::from_static(b"m"), &big_data, 100)
            .unwrap();
        store.put_bytes(empty, RAW, Bytes::new(), b"", 0).unwrap();
        assert!(matches!(
            store.get(&small).unwrap().body,
            ObjectBody::Inline(_)
        ));
        assert!(matches!(
            store.get(&large).unwrap().body,
            ObjectBody::Shm(_)
        ));
        assert!(matches!(
            store.get(&empty).unwrap().body,
            ObjectBody::Inline(_)
        ));
        assert_eq!(store.read(&small).unwrap(), &b"tiny"[..]);
        assert_eq!(store.read(&large).unwrap(), big_data);
        assert_eq!(store.read(&empty).unwrap().len(), 0);
        assert!(matches!(
            store.put_bytes(large, RAW, Bytes::new(), b"x", 100),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.put_bytes(
                ObjectId::random(),
                RAW,
                Bytes::new(),
                &vec![0; 2 << 20],
                100
            ),
            Err(StoreError::TooLarge { .. })
        ));
        assert_eq!(store.stats().num_unsealed, 0, "failed puts leave no block");
    }

    #[test]
    fn read_keeps_a_deleted_block_alive_until_dropped() {
        let dir = temp_dir();
        let store = new_store(&dir, 64 * KB);
        let id = ObjectId::random();
        store
            .put_bytes(id, RAW, Bytes::new(), &[7u8; 20_000], 0)
            .unwrap();
        let view = store.read(&id).unwrap();
        let slice = view.slice(100..200);
        drop(view);
        assert!(store.delete(&id));
        assert_eq!(store.stats().used, 20 * KB, "block still borrowed");
        // The borrowed block cannot be handed out again.
        let other = ObjectId::random();
        store
            .put_bytes(other, RAW, Bytes::new(), &[9u8; 40_000], 0)
            .unwrap();
        assert!(slice.iter().all(|&b| b == 7));
        drop(slice);
        assert_eq!(store.stats().used, 40 * KB);
    }

    #[test]
    fn readers_may_outlive_the_store() {
        let dir = temp_dir();
        let store = new_store(&dir, 64 * KB);
        let id = ObjectId::random();
        store
            .put_bytes(id, RAW, Bytes::new(), &[3u8; 10_000], 0)
            .unwrap();
        let view = store.read(&id).unwrap();
        let path = store.arena_path().to_path_buf();
        drop(store);
        assert!(path.exists(), "mapping still borrowed");
        assert!(view.iter().all(|&b| b == 3));
        drop(view);
        assert!(!path.exists(), "arena unlinked with the last reference");
    }

    #[test]
    fn pinning() {
        let dir = temp_dir();
        let store = new_store(&dir, 64 * KB);
        let id = ObjectId::random();
        assert!(matches!(
            store.set_pinned(&id, true),
            Err(StoreError::NotFound { .. })
        ));
        store
            .put_inline(id, RAW, Bytes::new(), Bytes::from_static(b"v"))
            .unwrap();
        assert!(!store.is_pinned(&id));
        store.set_pinned(&id, true).unwrap();
        assert!(store.is_pinned(&id));
        store.set_pinned(&id, false).unwrap();
        assert!(!store.is_pinned(&id));
    }

    #[test]
    fn concurrent_put_read_delete() {
        let dir = temp_dir();
        let store = Arc::new(new_store(&dir, 4 << 20));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..500u32 {
                        let id = ObjectId::random();
                        let data = vec![(t * 31 + i) as u8; 5000 + (i as usize % 7) * 4096];
                        match store.put_bytes(id, RAW, Bytes::new(), &data, 1000) {
                            Ok(()) => {
                                let read = store.read(&id).unwrap();
                                assert!(store.delete(&id));
                                assert_eq!(read, data);
                            }
                            Err(StoreError::Full { .. }) => {}
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = store.stats();
        assert_eq!(
            (stats.used, stats.num_objects, stats.num_unsealed),
            (0, 0, 0)
        );
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }
}
