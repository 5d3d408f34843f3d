//! The shared-memory arena: one file (normally under `/dev/shm`) of
//! `capacity` bytes, mapped `MAP_SHARED` read/write into the daemon. Local
//! client processes map the same file and write large objects in place; the
//! daemon only hands out offsets.
//!
//! # Safety argument
//!
//! The mapping is shared with other processes, so Rust's aliasing rules
//! cannot be enforced by types; they are upheld by the store's protocol:
//!
//! - a block is written only while it is allocated and unsealed, and only by
//!   the one party that created it (a client process, or the daemon inside
//!   `Store::put_bytes`);
//! - a block is read (through [`Arena::slice`]) only after it is sealed, and
//!   sealed objects are immutable;
//! - a block is freed only when no reader in this process still borrows it
//!   (the store defers the free until the last zero-copy `Bytes` is dropped).
//!
//! A misbehaving client that scribbles over memory it does not own can
//! corrupt object *contents*, but cannot make the daemon read or write
//! outside the mapping: every access here is bounds-checked.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::StoreError;

/// The arena file and its mapping. Unlinks the file when dropped.
#[derive(Debug)]
pub struct Arena {
    /// Where clients find the file to map it.
    path: PathBuf,
    /// Kept open for the life of the mapping (and for `fallocate`).
    _file: File,
    /// `None` when `capacity == 0` (a zero-length mapping is not allowed).
    map: Option<MmapRaw>,
    capacity: u64,
}

impl Arena {
    /// Create (or truncate) the file at `path`, size it to `capacity` bytes
    /// (sparse), map it, and allocate `prefault_bytes` of it up front.
    pub fn create(path: &Path, capacity: u64, prefault_bytes: u64) -> Result<Arena, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::io(format!("create arena directory {}", parent.display()), e)
            })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::io(format!("open arena file {}", path.display()), e))?;
        // From here on, remove the file again if anything fails.
        let cleanup = UnlinkOnError(path);
        file.set_len(capacity)
            .map_err(|e| StoreError::io(format!("size arena file to {capacity} bytes"), e))?;
        warn_if_filesystem_too_small(&file, path, capacity);
        prefault(&file, prefault_bytes.min(capacity))?;
        let map = if capacity == 0 {
            None
        } else {
            let len = usize::try_from(capacity).map_err(|_| StoreError::TooLarge {
                requested: capacity,
                capacity: usize::MAX as u64,
            })?;
            let map = MmapOptions::new()
                .len(len)
                .map_raw(&file)
                .map_err(|e| StoreError::io(format!("map arena file {}", path.display()), e))?;
            Some(map)
        };
        std::mem::forget(cleanup);
        Ok(Arena {
            path: path.to_path_buf(),
            _file: file,
            map,
            capacity,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Copy `data` into the arena at `offset`.
    ///
    /// The caller must own the destination range as an allocated, unsealed
    /// block (see the module's safety argument); the store guarantees this.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        let start = self.check_range(offset, data.len() as u64)?;
        let Some(map) = &self.map else {
            return Ok(()); // only an empty write can pass the check
        };
        // SAFETY: `check_range` proved `start + data.len() <= capacity`, the
        // mapping's length, so the destination lies inside the live mapping.
        // `data` cannot overlap the destination block: the caller owns the
        // block exclusively (unsealed, never handed to a reader).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), map.as_mut_ptr().add(start), data.len());
        }
        Ok(())
    }

    /// Fill `len` bytes at `offset` from `file` (read from its start), as
    /// `write_at` does from memory; the same ownership rule applies (an
    /// allocated, unsealed block owned by the caller). The kernel copies
    /// file to file (`sendfile`), which is several times faster than
    /// reading into the mapping.
    pub fn read_file_into(&self, offset: u64, len: u64, file: &File) -> Result<(), StoreError> {
        self.check_range(offset, len)?;
        // sendfile writes at the output's file position: a description of
        // the arena file of its own (not a dup, which would share the
        // position with concurrent restores), positioned at `offset`.
        let out = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| StoreError::io("restore spilled object", e))?;
        // SAFETY: lseek on a descriptor we own.
        if unsafe { libc::lseek(out.as_raw_fd(), offset as libc::off_t, libc::SEEK_SET) } < 0 {
            return Err(StoreError::io(
                "restore spilled object",
                std::io::Error::last_os_error(),
            ));
        }
        copy_between(file, 0, &out, len).map_err(|e| StoreError::io("restore spilled object", e))
    }

    /// Write `len` bytes at `offset` (a sealed block) to `file`, from its
    /// start, file to file in the kernel (`sendfile`).
    pub fn copy_to_file(&self, offset: u64, len: u64, file: &File) -> Result<(), StoreError> {
        self.check_range(offset, len)?;
        copy_between(&self._file, offset, file, len).map_err(|e| StoreError::io("spill object", e))
    }

    /// Borrow `len` bytes at `offset`. The range should be a sealed object
    /// (immutable), see the module's safety argument.
    pub fn slice(&self, offset: u64, len: u64) -> Result<&[u8], StoreError> {
        let start = self.check_range(offset, len)?;
        let Some(map) = &self.map else {
            return Ok(&[]);
        };
        // SAFETY: the range is inside the mapping (checked above), the
        // mapping lives as long as `&self`, and sealed ranges are not written
        // while borrowed (module safety argument). `len` fits in usize since
        // it is at most the mapping's length.
        Ok(unsafe { std::slice::from_raw_parts(map.as_ptr().add(start), len as usize) })
    }

    /// Check `[offset, offset + len)` lies in `[0, capacity)`; returns the
    /// start as a `usize`.
    fn check_range(&self, offset: u64, len: u64) -> Result<usize, StoreError> {
        let out_of_bounds = StoreError::OutOfBounds {
            offset,
            len,
            capacity: self.capacity,
        };
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => usize::try_from(offset).map_err(|_| out_of_bounds),
            _ => Err(out_of_bounds),
        }
    }
}

/// `sendfile` `len` bytes from `input` at `offset` to `output` at its
/// current position.
fn copy_between(input: &File, offset: u64, output: &File, len: u64) -> std::io::Result<()> {
    let mut position = offset as libc::off_t;
    let end = offset + len;
    while (position as u64) < end {
        let remaining = (end - position as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open files we own; `position` is a
        // valid pointer that sendfile advances.
        let sent = unsafe {
            libc::sendfile(
                output.as_raw_fd(),
                input.as_raw_fd(),
                &mut position,
                remaining,
            )
        };
        if sent < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if sent == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes short", end - position as u64),
            ));
        }
    }
    Ok(())
}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), %error, "could not unlink arena file");
            }
        }
    }
}

/// Removes a half-made arena file unless forgotten.
struct UnlinkOnError<'a>(&'a Path);

impl Drop for UnlinkOnError<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Allocate the first `bytes` of the file so that first writes into them do
/// not have to allocate pages. Filesystems without `fallocate` are fine.
fn prefault(file: &File, bytes: u64) -> Result<(), StoreError> {
    if bytes == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
    // SAFETY: plain syscall on a valid, open file descriptor.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            tracing::debug!(%error, "arena filesystem does not support fallocate; not prefaulting");
            Ok(())
        }
        _ => Err(StoreError::io(
            format!("prefault {bytes} bytes of the arena"),
            error,
        )),
    }
}

/// A sparse arena larger than the free space of its filesystem works until
/// it fills up, and then a write into a new page kills the writer with
/// SIGBUS. Say so at startup.
fn warn_if_filesystem_too_small(file: &File, path: &Path, capacity: u64) {
    // SAFETY: `statvfs` is plain old data; zeroed is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a valid out-pointer.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stats) } != 0 {
        return;
    }
    let available = (stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64);
    if available < capacity {
        tracing::warn!(
            path = %path.display(),
            capacity,
            available,
            "arena capacity exceeds the free space of its filesystem; writes may fail with SIGBUS when it fills"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_dir;

    #[test]
    fn create_write_read_and_unlink() {
        let dir = temp_dir();
        let path = dir.path().join("nested/arena");
        let arena = Arena::create(&path, 1 << 20, 1 << 16).unwrap();
        assert!(path.exists());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        arena.write_at(4096, b"hello").unwrap();
        assert_eq!(arena.slice(4096, 5).unwrap(), b"hello");
        // A second mapping of the file (as a client would make) sees the data.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[4096..4101], b"hello");
        drop(arena);
        assert!(!path.exists());
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let dir = temp_dir();
        let arena = Arena::create(&dir.path().join("arena"), 8192, 0).unwrap();
        assert!(matches!(
            arena.write_at(8190, b"abc"),
            Err(StoreError::OutOfBounds {
                offset: 8190,
                len: 3,
                capacity: 8192
            })
        ));
        assert!(arena.slice(u64::MAX, 2).is_err());
        assert!(arena.slice(0, 8193).is_err());
        assert_eq!(arena.slice(8192, 0).unwrap(), b"");
    }

    #[test]
    fn zero_capacity_arena_has_no_mapping() {
        let dir = temp_dir();
        let arena = Arena::create(&dir.path().join("arena"), 0, 4096).unwrap();
        assert_eq!(arena.slice(0, 0).unwrap(), b"");
        assert!(arena.write_at(0, b"x").is_err());
    }
}
