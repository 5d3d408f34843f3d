//! Helpers shared by the unit tests.

use std::path::Path;

/// A fresh temporary directory, in `/dev/shm` when it exists (the arena's
/// real home) so the tests exercise tmpfs.
pub fn temp_dir() -> tempfile::TempDir {
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("ember-flight-store-test-");
        builder
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return dir;
        }
    }
    builder.tempdir().expect("create temp dir")
}

/// A 64 MiB store (1 MiB prefaulted, no spilling) in a fresh directory; the
/// directory lives as long as the returned guard.
pub fn test_store() -> (tempfile::TempDir, std::sync::Arc<crate::Store>) {
    let dir = temp_dir();
    let store = crate::Store::new(crate::StoreConfig {
        arena_path: dir.path().join("arena"),
        capacity: 64 << 20,
        prefault_bytes: 1 << 20,
        spill: None,
    })
    .expect("create store");
    (dir, std::sync::Arc::new(store))
}
