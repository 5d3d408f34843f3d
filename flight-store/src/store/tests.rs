//! Unit tests of the object table (spilling has its own, in `spill.rs`).

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
        spill: None,
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

#[test]
fn block_writers_fill_in_pieces_and_give_back_what_they_do_not_finish() {
    let dir = temp_dir();
    let store = new_store(&dir, 64 * KB);
    let id = ObjectId::random();
    let mut writer = store.writer(id, 10_000).unwrap();
    writer.write(&[1u8; 6_000]).unwrap();
    assert!(store.get(&id).is_none(), "invisible until finished");
    writer.write(&[2u8; 4_000]).unwrap();
    assert!(matches!(
        writer.write(&[3u8]),
        Err(StoreError::InvalidData(_))
    ));
    writer
        .finish(&store, RAW, Bytes::from_static(b"m"))
        .unwrap();
    let data = store.read(&id).unwrap();
    assert!(data[..6_000].iter().all(|&b| b == 1) && data[6_000..].iter().all(|&b| b == 2));

    let short = ObjectId::random();
    let mut writer = store.writer(short, 10_000).unwrap();
    writer.write(&[1u8; 10]).unwrap();
    let used = store.stats().used;
    assert!(matches!(
        writer.finish(&store, RAW, Bytes::new()),
        Err(StoreError::InvalidData(_))
    ));
    assert!(
        store.stats().used < used,
        "an unfinished block is given back"
    );
    assert!(!store.contains(&short));
    assert_eq!(store.stats().num_unsealed, 0);
}
