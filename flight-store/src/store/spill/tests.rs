//! Spilling against a real arena and a real spill directory.

use std::time::Duration;

use super::*;
use crate::store::{PinOutcome, StoreConfig};
use crate::test_util::temp_dir;
use ember_proto::v1::ValueFormat;

const RAW: i32 = ValueFormat::Raw as i32;
const KB: u64 = 1024;

fn spill_store(dir: &tempfile::TempDir, capacity: u64, max_disk_fraction: f64) -> Store {
    Store::new(StoreConfig {
        arena_path: dir.path().join("arena"),
        capacity,
        prefault_bytes: 0,
        spill: Some(SpillConfig {
            dir: dir.path().join("spill"),
            max_disk_fraction,
        }),
    })
    .unwrap()
}

fn put(store: &Store, byte: u8, size: usize) -> ObjectId {
    let id = ObjectId::random();
    store
        .put_bytes(id, RAW, Bytes::from_static(b"m"), &vec![byte; size], 0)
        .unwrap();
    id
}

/// Wait (bounded) until `condition` holds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Ask for `room` bytes until `id` is spilled (the store's other objects
/// are pinned or more recently used).
fn spill_now(store: &Store, id: &ObjectId, room: u64) {
    let request = store.request_room(room);
    eventually("the object spills", || store.is_spilled(id));
    drop(request);
}

fn deadline_in(ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(ms)
}

#[test]
fn victims_with_a_disk_copy_go_first_then_least_recently_used() {
    let ids: Vec<ObjectId> = (0..4).map(|_| ObjectId::random()).collect();
    let candidate = |i: usize, last_use: u64, on_disk: bool| Candidate {
        id: ids[i],
        bytes: 100,
        last_use,
        on_disk,
    };
    let candidates = vec![
        candidate(0, 5, false),
        candidate(1, 1, false),
        candidate(2, 9, true),
        candidate(3, 3, false),
    ];
    assert_eq!(
        choose_victims(candidates.clone(), 250),
        vec![ids[2], ids[1], ids[3]]
    );
    assert_eq!(choose_victims(candidates.clone(), 1), vec![ids[2]]);
    assert!(choose_victims(candidates.clone(), 0).is_empty());
    assert_eq!(
        choose_victims(candidates, 10_000).len(),
        4,
        "all, when short"
    );
}

#[test]
fn room_requests_spill_the_least_recently_used_objects() {
    let dir = temp_dir();
    let store = spill_store(&dir, 1024 * KB, 1.0);
    let first = put(&store, 1, 300 * 1024);
    let second = put(&store, 2, 300 * 1024);
    let third = put(&store, 3, 300 * 1024);
    // `first` is used again: `second` is now the least recently used.
    assert!(matches!(store.pin_shm(&first), PinOutcome::Pinned(_)));
    store.unpin(&first);
    assert!(matches!(
        store.create(ObjectId::random(), 300 * 1024),
        Err(StoreError::Full { .. })
    ));
    let request = store.request_room(300 * 1024);
    eventually("an object is spilled", || store.stats().num_spilled == 1);
    assert!(store.is_spilled(&second));
    assert!(!store.is_spilled(&first) && !store.is_spilled(&third));
    assert!(dir.path().join("spill").join(second.hex()).exists());
    let fourth = ObjectId::random();
    store.create(fourth, 300 * 1024).unwrap();
    drop(request);
    let stats = store.stats();
    assert_eq!(stats.spilled_bytes, 300 * 1024);
    assert_eq!(stats.total_spilled_bytes, 300 * 1024);
    assert_eq!(stats.num_objects, 3, "spilled objects still exist");
    assert!(matches!(
        store.get(&second).unwrap().body,
        ObjectBody::Spilled
    ));
    assert!(store.read(&second).is_none(), "no zero-copy read from disk");
    assert_eq!(store.load(&second).unwrap(), vec![2u8; 300 * 1024]);
    assert_eq!(store.load_prefix(&second, 10).unwrap(), vec![2u8; 10]);
}

#[test]
fn pinned_objects_are_never_spilled() {
    let dir = temp_dir();
    let store = spill_store(&dir, 512 * KB, 1.0);
    let mapped = put(&store, 1, 200 * 1024);
    let user_pinned = put(&store, 2, 200 * 1024);
    assert!(matches!(store.pin_shm(&mapped), PinOutcome::Pinned(_)));
    store.set_pinned(&user_pinned, true).unwrap();
    let _request = store.request_room(200 * 1024);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(store.stats().num_spilled, 0);
    // Unpinning lets the waiting request be met.
    store.unpin(&mapped);
    eventually("the unpinned object spills", || store.is_spilled(&mapped));
    assert!(!store.is_spilled(&user_pinned));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_equal_data_making_room_as_needed() {
    let dir = temp_dir();
    let store = spill_store(&dir, 512 * KB, 1.0);
    let a = put(&store, 7, 200 * 1024);
    spill_now(&store, &a, 400 * 1024);
    let b = put(&store, 8, 200 * 1024);
    let c = put(&store, 9, 200 * 1024);
    // The arena is full of b and c: restoring a spills b (least recent).
    store.restore(a, deadline_in(10_000)).await.unwrap();
    assert_eq!(store.pins(&a), 1, "restored with the caller's pin");
    store.unpin(&a);
    assert_eq!(store.read(&a).unwrap(), vec![7u8; 200 * 1024]);
    assert!(store.is_spilled(&b) && !store.is_spilled(&c));
    let stats = store.stats();
    assert_eq!(stats.total_restored_bytes, 200 * 1024);
    assert_eq!(stats.num_spilled, 1);
    // Restoring what is in memory only pins it; an unknown id is NotFound.
    store.restore(a, deadline_in(1000)).await.unwrap();
    store.unpin(&a);
    assert!(matches!(
        store.restore(ObjectId::random(), deadline_in(1000)).await,
        Err(StoreError::NotFound { .. })
    ));
    // `a` kept its file: evicting it again needs no write.
    let written = store.stats().total_spilled_bytes;
    spill_now(&store, &a, 200 * 1024);
    assert_eq!(store.stats().total_spilled_bytes, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_waits_for_room_then_gives_up_with_full() {
    let dir = temp_dir();
    let store = spill_store(&dir, 256 * KB, 1.0);
    let a = put(&store, 1, 200 * 1024);
    spill_now(&store, &a, 200 * 1024);
    let b = put(&store, 2, 200 * 1024);
    assert!(matches!(store.pin_shm(&b), PinOutcome::Pinned(_)));
    match store.restore(a, deadline_in(200)).await {
        Err(StoreError::Full { requested, .. }) => assert_eq!(requested, 200 * 1024),
        other => panic!("expected Full, got {other:?}"),
    }
    store.unpin(&b);
    store.restore(a, deadline_in(10_000)).await.unwrap();
    store.unpin(&a);
    assert_eq!(store.read(&a).unwrap(), vec![1u8; 200 * 1024]);
}

#[test]
fn deleting_a_spilled_object_removes_its_file_and_drop_removes_the_directory() {
    let dir = temp_dir();
    let store = spill_store(&dir, 256 * KB, 1.0);
    let a = put(&store, 1, 200 * 1024);
    spill_now(&store, &a, 200 * 1024);
    let file = dir.path().join("spill").join(a.hex());
    assert!(file.exists());
    assert!(store.delete(&a));
    eventually("the file is removed", || !file.exists());
    let stats = store.stats();
    assert_eq!(
        (stats.num_spilled, stats.spilled_bytes, stats.num_objects),
        (0, 0, 0)
    );
    let b = put(&store, 2, 200 * 1024);
    spill_now(&store, &b, 200 * 1024);
    drop(store);
    assert!(!dir.path().join("spill").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_disk_is_a_clear_error_not_a_retry_loop() {
    let dir = temp_dir();
    // A threshold of 0: the filesystem is always "too full" to spill.
    let store = spill_store(&dir, 256 * KB, 0.0);
    let a = put(&store, 1, 200 * 1024);
    let id = ObjectId::random();
    let started = std::time::Instant::now();
    let result = store
        .put_bytes_waiting(
            id,
            RAW,
            Bytes::new(),
            Bytes::from(vec![0u8; 200 * 1024]),
            0,
            deadline_in(20_000),
        )
        .await;
    match result {
        Err(StoreError::SpillFailed {
            requested, reason, ..
        }) => {
            assert_eq!(requested, 200 * 1024);
            assert!(reason.contains("spill directory"), "{reason}");
        }
        other => panic!("expected SpillFailed, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
    let (failures, _) = store.spill_failures();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(store.spill_failures().0, failures, "no retry loop");
    assert!(!store.is_spilled(&a), "nothing lost");
    assert_eq!(store.read(&a).unwrap(), vec![1u8; 200 * 1024]);
    let status = tonic::Status::from(StoreError::spill_failed(
        StoreError::Full {
            requested: 1,
            capacity: 2,
            used: 2,
        },
        "disk full".into(),
    ));
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_bytes_waiting_spills_to_fit() {
    let dir = temp_dir();
    let store = spill_store(&dir, 256 * KB, 1.0);
    let a = put(&store, 1, 200 * 1024);
    let b = ObjectId::random();
    store
        .put_bytes_waiting(
            b,
            RAW,
            Bytes::new(),
            Bytes::from(vec![5u8; 200 * 1024]),
            0,
            deadline_in(10_000),
        )
        .await
        .unwrap();
    assert!(store.is_spilled(&a));
    assert_eq!(store.read(&b).unwrap(), vec![5u8; 200 * 1024]);
    assert_eq!(store.load(&a).unwrap(), vec![1u8; 200 * 1024]);
}

#[test]
fn without_a_spill_directory_nothing_spills() {
    let dir = temp_dir();
    let store = Store::new(StoreConfig {
        arena_path: dir.path().join("arena"),
        capacity: 256 * KB,
        prefault_bytes: 0,
        spill: None,
    })
    .unwrap();
    let a = put(&store, 1, 200 * 1024);
    let _request = store.request_room(200 * 1024);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!store.is_spilled(&a));
    assert!(store.spill_dir().is_none());
}
