//! Spilling: when room is wanted in the arena and not there, objects no
//! reader has pinned are written to files in the spill directory and their
//! blocks freed; [`Store::restore`] reads one back into shared memory when
//! it is needed there, and [`Store::load`] reads it without restoring.
//!
//! Who asks for room: a create that does not fit holds a [`RoomRequest`]
//! (the node's waiting creates, a Flight `do_put`, a restore). One thread,
//! `ember-spill`, works while requests are not met: it frees the
//! shortfall by evicting objects that already have a copy on disk (no IO)
//! and then by spilling the least recently used unpinned objects
//! ([`choose_victims`], a pure function). A spilled object keeps its file
//! after a restore, so spilling it again is free; the file goes when the
//! object is deleted.
//!
//! A spill that fails (the disk is full, or fuller than
//! `SpillConfig::max_disk_fraction`) is counted and reported
//! ([`Store::spill_failures`]); the thread then waits for something to
//! change (a new request, a delete, an unpin) instead of retrying.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use ember_proto::v1::ShmLocation;
use ember_proto::ObjectId;

use super::{Busy, ObjectBody, RoomRequest, Shared, ShmLease, State, Store};
use crate::allocator::{round_up, AllocError};
use crate::error::StoreError;

/// Where and how much to spill.
#[derive(Clone, Debug)]
pub struct SpillConfig {
    /// A directory of this store's own: created at start, removed with its
    /// files when the store is dropped.
    pub dir: PathBuf,
    /// Spilling fails with a clear error rather than fill the filesystem
    /// that holds `dir` past this fraction of its size (as Ray's
    /// `local_fs_capacity_threshold`, default 0.95).
    pub max_disk_fraction: f64,
}

impl SpillConfig {
    pub(super) fn prepare(&self) -> Result<(), StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| {
                StoreError::io(format!("create spill directory {}", self.dir.display()), e)
            })?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        Ok(())
    }

    /// The spill file of `id`.
    pub(super) fn file_of(&self, id: &ObjectId) -> PathBuf {
        self.dir.join(id.hex())
    }

    /// Refuse to write `size` more bytes when that would fill the
    /// filesystem past `max_disk_fraction`.
    fn check_disk_room(&self, size: u64) -> Result<(), String> {
        let Ok(path) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) else {
            return Ok(());
        };
        // SAFETY: statvfs only writes into the zeroed struct we pass.
        let mut fs: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut fs) } != 0 {
            return Ok(()); // cannot tell: let the write itself fail if it must
        }
        let block = fs.f_frsize as u64;
        let total = fs.f_blocks as u64 * block;
        let available = fs.f_bavail as u64 * block;
        let used_after = total.saturating_sub(available).saturating_add(size);
        if total > 0 && used_after as f64 > self.max_disk_fraction * total as f64 {
            return Err(format!(
                "the spill directory {} is full: its filesystem has {available} of {total} bytes free, \
                 and spilling {size} more bytes would fill it past {:.0}% \
                 (free disk space, or start the node with another --spill-dir)",
                self.dir.display(),
                self.max_disk_fraction * 100.0
            ));
        }
        Ok(())
    }
}

/// An object the spill thread may spill or evict.
#[derive(Clone, Copy, Debug)]
pub(super) struct Candidate {
    pub id: ObjectId,
    /// Arena bytes its block frees.
    pub bytes: u64,
    pub last_use: u64,
    /// A copy is on disk already: evicting it costs no IO.
    pub on_disk: bool,
}

/// The objects to spill to free `need` bytes: those with a copy on disk
/// first (free to evict), then the least recently used. Fewer than `need`
/// bytes when the candidates do not add up to it.
pub(super) fn choose_victims(mut candidates: Vec<Candidate>, need: u64) -> Vec<ObjectId> {
    candidates.sort_unstable_by_key(|c| (!c.on_disk, c.last_use));
    let mut freed = 0u64;
    let mut victims = Vec::new();
    for candidate in candidates {
        if freed >= need {
            break;
        }
        freed += candidate.bytes;
        victims.push(candidate.id);
    }
    victims
}

/// One object being written to disk.
struct SpillJob {
    id: ObjectId,
    location: ShmLocation,
    /// Keeps the block allocated while it is copied.
    _lease: Arc<ShmLease>,
}

impl State {
    /// Bytes to free so that every waiting allocation fits: the total
    /// shortfall, or the missing contiguous room for the largest one.
    fn room_needed(&self) -> u64 {
        let Some((&largest, _)) = self.room_wanted.last_key_value() else {
            return 0;
        };
        let rounded = |size: u64| round_up(size).unwrap_or(size);
        let total: u64 = self
            .room_wanted
            .iter()
            .map(|(&size, &n)| rounded(size).saturating_mul(n as u64))
            .sum();
        let shortfall = total.saturating_sub(self.allocator.free_bytes());
        let contiguous = rounded(largest).saturating_sub(self.allocator.largest_free());
        shortfall.max(contiguous)
    }

    fn want_room(&mut self, size: u64, shared: &Arc<Shared>) -> RoomRequest {
        *self.room_wanted.entry(size).or_default() += 1;
        RoomRequest {
            size,
            shared: Arc::downgrade(shared),
        }
    }

    /// Sealed shm objects that nobody pins or reads in this process.
    fn spill_candidates(&self) -> Vec<Candidate> {
        self.objects
            .iter()
            .filter(|(_, e)| {
                e.sealed
                    && e.pins == 0
                    && !e.pinned
                    && e.busy == Busy::Idle
                    && matches!(e.object.body, ObjectBody::Shm(_))
                    && e.lease.as_ref().is_some_and(|l| Arc::strong_count(l) == 1)
            })
            .map(|(id, e)| Candidate {
                id: *id,
                bytes: round_up(e.object.size).unwrap_or(e.object.size),
                last_use: e.last_use,
                on_disk: e.on_disk,
            })
            .collect()
    }

    /// Evict the victims that have a copy on disk (their leases are
    /// returned, to be dropped outside the lock); mark the others as being
    /// spilled and return them as jobs.
    fn begin_spill(&mut self, victims: &[ObjectId]) -> (Vec<Arc<ShmLease>>, Vec<SpillJob>) {
        let mut evicted = Vec::new();
        let mut jobs = Vec::new();
        for id in victims {
            let Some(entry) = self.objects.get_mut(id) else {
                continue;
            };
            let ObjectBody::Shm(location) = entry.object.body else {
                continue;
            };
            let Some(lease) = entry.lease.clone() else {
                continue;
            };
            if entry.on_disk {
                entry.object.body = ObjectBody::Spilled;
                evicted.extend(entry.lease.take());
                self.spilled_bytes += entry.object.size;
                self.num_spilled += 1;
            } else {
                entry.busy = Busy::Spilling;
                jobs.push(SpillJob {
                    id: *id,
                    location,
                    _lease: lease,
                });
            }
        }
        (evicted, jobs)
    }

    /// Record the outcome of spill jobs; returns the leases of spilled
    /// objects (to be dropped outside the lock). An object pinned while it
    /// was being written stays in memory, its file kept as a second copy.
    fn finish_spill(
        &mut self,
        results: Vec<(ObjectId, Result<(), String>)>,
        config: &super::SpillConfig,
    ) -> Vec<Arc<ShmLease>> {
        let mut freed = Vec::new();
        for (id, result) in results {
            let Some(entry) = self.objects.get_mut(&id) else {
                if result.is_ok() {
                    self.to_unlink.push(config.file_of(&id)); // deleted meanwhile
                }
                continue;
            };
            entry.busy = Busy::Idle;
            match result {
                Ok(()) => {
                    entry.on_disk = true;
                    self.total_spilled_bytes += entry.object.size;
                    if entry.pins == 0 && !entry.pinned {
                        entry.object.body = ObjectBody::Spilled;
                        freed.extend(entry.lease.take());
                        self.spilled_bytes += entry.object.size;
                        self.num_spilled += 1;
                    }
                }
                Err(message) => {
                    tracing::warn!(object_id = %id, %message, "spilling failed");
                    self.spill_failures += 1;
                    self.last_spill_failure = message;
                    self.spill_idle = true;
                }
            }
        }
        freed
    }
}

/// Start the spill thread.
pub(super) fn start(shared: Arc<Shared>) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("ember-spill".into())
        .spawn(move || run(&shared))
        .map_err(|e| StoreError::io("start the spill thread", e))
}

/// The spill thread: make room while it is wanted, unlink the files of
/// deleted objects, and remove the spill directory at shutdown.
fn run(shared: &Arc<Shared>) {
    let Some(config) = shared.spill.clone() else {
        return;
    };
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            break;
        }
        if !state.to_unlink.is_empty() {
            let files = std::mem::take(&mut state.to_unlink);
            drop(state);
            for file in files {
                let _ = std::fs::remove_file(file);
            }
            state = shared.lock();
            continue;
        }
        let need = state.room_needed();
        if need == 0 || state.spill_idle {
            state = shared
                .spill_wakeup
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let victims = choose_victims(state.spill_candidates(), need);
        if victims.is_empty() {
            tracing::debug!(need, "room wanted but nothing can be spilled");
            state.spill_idle = true;
            continue;
        }
        let (evicted, jobs) = state.begin_spill(&victims);
        drop(state);
        drop(evicted); // frees blocks: outside the lock
        let mut results = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let started = std::time::Instant::now();
            let result = write_spill_file(shared, &config, job);
            tracing::debug!(
                object_id = %job.id,
                bytes = job.location.size,
                elapsed_ms = started.elapsed().as_millis() as u64,
                ok = result.is_ok(),
                "spilled"
            );
            let failed = result.is_err();
            results.push((job.id, result));
            if failed {
                break; // the disk is full: do not try the others
            }
        }
        let mut guard = shared.lock();
        for job in &jobs[results.len()..] {
            if let Some(entry) = guard.objects.get_mut(&job.id) {
                entry.busy = Busy::Idle; // not tried
            }
        }
        let freed = guard.finish_spill(results, &config);
        drop(guard);
        drop(jobs);
        drop(freed);
        shared.changed();
        state = shared.lock();
    }
    drop(state);
    let _ = std::fs::remove_dir_all(&config.dir);
}

/// Copy one object's bytes into its spill file.
fn write_spill_file(shared: &Shared, config: &SpillConfig, job: &SpillJob) -> Result<(), String> {
    let size = job.location.size;
    config.check_disk_room(size)?;
    let path = config.file_of(&job.id);
    let written = File::create(&path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            shared
                .arena
                .copy_to_file(job.location.offset, size, &file)
                .map_err(|e| match e {
                    StoreError::Io { source, .. } => source.to_string(),
                    other => other.to_string(),
                })
        });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&path);
        return Err(format!(
            "cannot spill object {} ({size} bytes) to the spill directory {}: {error}",
            job.id,
            config.dir.display()
        ));
    }
    Ok(())
}

impl Store {
    /// Ask for `size` bytes of room: the spill thread frees unpinned memory
    /// until the request is met or it is dropped.
    pub fn request_room(&self, size: u64) -> RoomRequest {
        let mut state = self.shared.lock();
        let request = state.want_room(size, &self.shared);
        self.wake_spiller(&mut state);
        request
    }

    /// Failed spill attempts since the start, and the last one's message.
    pub fn spill_failures(&self) -> (u64, String) {
        let state = self.shared.lock();
        (state.spill_failures, state.last_spill_failure.clone())
    }

    /// Bring a spilled object back into shared memory, waiting (until
    /// `deadline`) for room when the arena is full. Returns at once if it
    /// is in memory already; joins a restore in progress.
    ///
    /// `Ok` comes with one pin held for the caller (give it back with
    /// [`Store::unpin`]): without it, the object could be spilled again
    /// before whoever waited for it had taken its own pin.
    pub async fn restore(
        &self,
        id: ObjectId,
        deadline: tokio::time::Instant,
    ) -> Result<(), StoreError> {
        let mut changes = self.shared.changes.subscribe();
        let mut room: Option<RoomRequest> = None;
        let failures_before = self.spill_failures().0;
        let (location, lease) = loop {
            changes.borrow_and_update();
            let size = {
                let mut guard = self.shared.lock();
                let state = &mut *guard;
                let Some(entry) = state.objects.get_mut(&id).filter(|e| e.sealed) else {
                    return Err(StoreError::NotFound { id });
                };
                if !matches!(entry.object.body, ObjectBody::Spilled) {
                    entry.pins += 1;
                    return Ok(());
                }
                let size = entry.object.size;
                if entry.busy != Busy::Restoring {
                    match state.allocator.allocate(size) {
                        Ok(block) => {
                            entry.busy = Busy::Restoring;
                            let lease = Arc::new(ShmLease {
                                block_offset: block.offset,
                                shared: Arc::downgrade(&self.shared),
                            });
                            let location = ShmLocation {
                                offset: block.offset,
                                size,
                            };
                            break (location, lease);
                        }
                        Err(AllocError::Full { .. }) if room.is_none() => {
                            room = Some(state.want_room(size, &self.shared));
                            self.wake_spiller(state);
                        }
                        Err(AllocError::Full { .. }) => {}
                        Err(other) => return Err(other.into()),
                    }
                }
                size
            };
            let full = || {
                let stats = self.stats();
                StoreError::Full {
                    requested: size,
                    capacity: stats.capacity,
                    used: stats.used,
                }
            };
            let (failures, reason) = self.spill_failures();
            if failures > failures_before {
                return Err(StoreError::spill_failed(full(), reason));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::NotFound { id }),
                Err(_) => return Err(full()),
            }
        };
        drop(room);
        let path = match &self.shared.spill {
            Some(config) => config.file_of(&id),
            None => return Err(StoreError::NotFound { id }),
        };
        let shared = self.shared.clone();
        let read = tokio::task::spawn_blocking(move || {
            let file = File::open(&path)
                .map_err(|e| StoreError::io(format!("open spill file {}", path.display()), e))?;
            shared
                .arena
                .read_file_into(location.offset, location.size, &file)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::io("restore", std::io::Error::other(e))));
        let mut lease = Some(lease);
        let found = {
            let mut guard = self.shared.lock();
            let state = &mut *guard;
            state.clock += 1;
            match state.objects.get_mut(&id) {
                Some(entry) => {
                    entry.busy = Busy::Idle;
                    if read.is_ok() {
                        entry.object.body = ObjectBody::Shm(location);
                        entry.lease = lease.take();
                        entry.last_use = state.clock;
                        entry.pins += 1; // the caller's
                        state.spilled_bytes -= location.size;
                        state.num_spilled -= 1;
                        state.total_restored_bytes += location.size;
                    }
                    true
                }
                None => false,
            }
        };
        drop(lease); // a failed or orphaned restore frees its block
        self.shared.changed();
        match (read, found) {
            (Err(error), _) => {
                tracing::warn!(object_id = %id, %error, "restoring a spilled object failed");
                Err(error)
            }
            (Ok(()), false) => Err(StoreError::NotFound { id }),
            (Ok(()), true) => Ok(()),
        }
    }

    /// An object's data, from memory (zero-copy) or read from its spill
    /// file (blocking IO: call from `spawn_blocking`) without restoring it.
    pub fn load(&self, id: &ObjectId) -> Result<Bytes, StoreError> {
        self.load_prefix(id, u64::MAX)
    }

    /// At most the first `max_len` bytes of an object's data (all of it when
    /// it is in memory), as [`Store::load`].
    pub fn load_prefix(&self, id: &ObjectId, max_len: u64) -> Result<Bytes, StoreError> {
        if let Some(data) = self.read(id) {
            return Ok(data);
        }
        let (on_disk, size) = {
            let state = self.shared.lock();
            let entry = state
                .objects
                .get(id)
                .filter(|e| e.sealed)
                .ok_or(StoreError::NotFound { id: *id })?;
            (entry.on_disk, entry.object.size)
        };
        let (true, Some(config)) = (on_disk, &self.shared.spill) else {
            // Restored meanwhile (and not spilled before): memory has it.
            return self.read(id).ok_or(StoreError::NotFound { id: *id });
        };
        let path = config.file_of(id);
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound { id: *id },
            _ => StoreError::io(format!("open spill file {}", path.display()), e),
        })?;
        let len = size.min(max_len);
        let mut data = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut data, 0)
            .map_err(|e| StoreError::io(format!("read spill file {}", path.display()), e))?;
        Ok(Bytes::from(data))
    }

    /// [`Store::writer`] that waits (until `deadline`) for room when the
    /// arena is full, asking the spill thread to make it; fails early when
    /// spilling fails while it waits.
    pub async fn writer_waiting(
        &self,
        id: ObjectId,
        size: u64,
        deadline: tokio::time::Instant,
    ) -> Result<super::BlockWriter, StoreError> {
        let mut changes = self.shared.changes.subscribe();
        let mut room: Option<RoomRequest> = None;
        let failures_before = self.spill_failures().0;
        loop {
            changes.borrow_and_update();
            let full = match self.writer(id, size) {
                Ok(writer) => return Ok(writer),
                Err(full @ StoreError::Full { .. }) => full,
                Err(other) => return Err(other),
            };
            let (failures, reason) = self.spill_failures();
            if failures > failures_before {
                return Err(StoreError::spill_failed(full, reason));
            }
            if room.is_none() {
                room = Some(self.request_room(size));
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(full),
            }
        }
    }

    /// `put_bytes` that waits (until `deadline`) for room when the arena is
    /// full, asking the spill thread to make it. Fails early when spilling
    /// fails while it waits.
    pub async fn put_bytes_waiting(
        &self,
        id: ObjectId,
        format: i32,
        metadata: Bytes,
        data: Bytes,
        inline_threshold: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), StoreError> {
        if data.len() <= inline_threshold || data.is_empty() {
            return self.put_inline(id, format, metadata, data);
        }
        let mut writer = self.writer_waiting(id, data.len() as u64, deadline).await?;
        // The copy runs off the async workers.
        let writer = tokio::task::spawn_blocking(move || writer.write(&data).map(|()| writer))
            .await
            .unwrap_or_else(|e| Err(StoreError::io("copy", std::io::Error::other(e))))?;
        writer.finish(self, format, metadata)
    }
}

#[cfg(test)]
mod tests;
