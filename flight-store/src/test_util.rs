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
