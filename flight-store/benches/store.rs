//! Criterion benchmarks of the object store's table and arena.
//!
//! ```text
//! cargo bench -p ember-flight-store --bench store
//! cargo bench --no-run -p ember-flight-store          # compile only
//! ```
//!
//! - `create_seal`: allocate an unsealed shm block (`Store::create`) and seal
//!   it, as a local client's put does (the client writes the bytes in its own
//!   mapping in between, so no copy here), then delete it; 1 KiB and 1 MB.
//! - `create_write_seal`: the same with the daemon writing the data into the
//!   block (`Store::writer` + `BlockWriter::write` + `finish`), as a pull from
//!   another node does; 1 MB from a source buffer that stays in cache, into
//!   warm (already faulted) arena memory: 48 objects stay live, the oldest
//!   deleted each time, so the destination cycles through 48 MB.
//! - `put_inline`: a 100-byte value stored inline, then deleted.
//! - `get`: the table lookup of a sealed object (`Store::get`) and a
//!   zero-copy read of a 1 MB shm object (`Store::read`, the returned `Bytes`
//!   dropped each time).

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ember_flight_store::{Store, StoreConfig};
use ember_proto::{ObjectId, TaskId};

const MB: usize = 1_000_000;
const RAW: i32 = ember_proto::v1::ValueFormat::Raw as i32;

fn store(dir: &tempfile::TempDir) -> Store {
    Store::new(StoreConfig {
        arena_path: dir.path().join("arena"),
        capacity: 64 << 20,
        prefault_bytes: 64 << 20,
        spill: None,
    })
    .unwrap()
}

fn shm_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn new_id() -> ObjectId {
    ObjectId::for_return(TaskId::random(), 0)
}

fn create_seal(c: &mut Criterion) {
    let dir = shm_dir();
    let store = store(&dir);
    let mut group = c.benchmark_group("create_seal");
    for (label, size) in [("1KiB", 1024u64), ("1MB", MB as u64)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(label, |b| {
            b.iter(|| {
                let id = new_id();
                let location = store.create(id, size).unwrap();
                store.seal(id, RAW, Bytes::new(), location).unwrap();
                black_box(store.delete(&id))
            })
        });
    }
    group.finish();

    // 48 objects stay live (48 MB, more than the 32 MiB L3 here): each write
    // goes to memory that is warm (faulted) but mostly not cached.
    let mut group = c.benchmark_group("create_write_seal");
    let data = vec![7u8; MB];
    let mut live = VecDeque::new();
    group.throughput(Throughput::Bytes(MB as u64));
    group.bench_function("1MB", |b| {
        b.iter(|| {
            if live.len() == 48 {
                let oldest = live.pop_front().unwrap();
                store.delete(&oldest);
            }
            let id = new_id();
            let mut writer = store.writer(id, MB as u64).unwrap();
            writer.write(black_box(&data)).unwrap();
            writer.finish(&store, RAW, Bytes::new()).unwrap();
            live.push_back(id);
        })
    });
    group.finish();
    for id in live {
        store.delete(&id);
    }

    let mut group = c.benchmark_group("put_inline");
    let small = Bytes::from_static(&[1u8; 100]);
    group.throughput(Throughput::Elements(1));
    group.bench_function("100B", |b| {
        b.iter(|| {
            let id = new_id();
            store
                .put_inline(id, RAW, Bytes::new(), small.clone())
                .unwrap();
            black_box(store.delete(&id))
        })
    });
    group.finish();
}

fn get(c: &mut Criterion) {
    let dir = shm_dir();
    let store = store(&dir);
    let inline = new_id();
    store
        .put_inline(inline, RAW, Bytes::new(), Bytes::from_static(&[1u8; 100]))
        .unwrap();
    let big = new_id();
    store
        .put_bytes(big, RAW, Bytes::new(), &vec![3u8; MB], 100 << 10)
        .unwrap();
    // Enough other objects that the table lookups are not of a tiny map.
    for _ in 0..10_000 {
        store
            .put_inline(new_id(), RAW, Bytes::new(), Bytes::from_static(b"x"))
            .unwrap();
    }
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inline_100B", |b| {
        b.iter(|| store.get(black_box(&inline)).unwrap())
    });
    group.bench_function("shm_1MB", |b| {
        b.iter(|| store.get(black_box(&big)).unwrap())
    });
    group.bench_function("read_shm_1MB", |b| {
        b.iter(|| black_box(store.read(black_box(&big)).unwrap().len()))
    });
    group.finish();
}

criterion_group!(benches, create_seal, get);
criterion_main!(benches);
