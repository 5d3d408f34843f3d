//! Arrow tables against a real node: `ember::Table` put, passed and
//! returned as `ARROW` values (Arrow IPC streams) between Rust and Python
//! (`pyarrow.Table`), Rust worker functions and actor methods taking and
//! returning tables, pulls over the node's Arrow Flight service (Unix
//! socket and gRPC clients), and the errors of values of the other format.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{ServingProcess, TestNode};
use ember::arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use ember::arrow_schema::{DataType, Field, Schema};
use ember::{Client, Error, Function, Options, ServeOptions, Table, ValueFormat, Worker};
use serde::{Deserialize, Serialize};

const T: Duration = Duration::from_secs(120);

/// The test table of `n` rows, as Python's `make(n)` below builds it too:
/// `x` = i, `y` = i / 2 (null when i % 3 == 0), `s` = "r<i>"; in batches
/// of at most `batch` rows.
fn table(n: i64, batch: i64) -> Table {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Int64, false),
        Field::new("y", DataType::Float64, true),
        Field::new("s", DataType::Utf8, false),
    ]));
    let mut batches = Vec::new();
    let mut from = 0;
    while from < n {
        let to = (from + batch).min(n);
        batches.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(from..to)),
                    Arc::new(Float64Array::from_iter(
                        (from..to).map(|i| (i % 3 != 0).then_some(i as f64 / 2.0)),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        (from..to).map(|i| format!("r{i}")),
                    )),
                ],
            )
            .unwrap(),
        );
        from = to;
    }
    Table::new(schema, batches).unwrap()
}

type Columns = (Vec<i64>, Vec<Option<f64>>, Vec<String>);

/// A table's `x`, `y`, `s` columns, across its batches (which may be cut
/// anywhere), checking their types.
fn columns(t: &Table) -> Columns {
    let names: Vec<&str> = t
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["x", "y", "s"]);
    let types: Vec<&DataType> = t.schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(
        types,
        [&DataType::Int64, &DataType::Float64, &DataType::Utf8]
    );
    let (mut x, mut y, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for b in &t.batches {
        let xs = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let ys = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        let ss = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(xs.null_count(), 0);
        x.extend(xs.values().iter().copied());
        y.extend(ys.iter());
        s.extend(ss.iter().map(|v| v.unwrap().to_string()));
    }
    assert_eq!(x.len(), t.num_rows());
    (x, y, s)
}

fn assert_same(got: &Table, want: &Table) {
    assert_eq!(got.num_rows(), want.num_rows());
    let (g, w) = (columns(got), columns(want));
    assert!(g.0 == w.0, "column x differs");
    assert!(g.1 == w.1, "column y differs");
    assert!(g.2 == w.2, "column s differs");
}

/// `x` doubled, the other columns as they are.
fn doubled(t: &Table) -> Table {
    let batches = t
        .batches
        .iter()
        .map(|b| {
            let x = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let x2 = Int64Array::from_iter_values(x.values().iter().map(|v| v * 2));
            let mut cols = b.columns().to_vec();
            cols[0] = Arc::new(x2);
            RecordBatch::try_new(b.schema(), cols).unwrap()
        })
        .collect();
    Table::new(t.schema.clone(), batches).unwrap()
}

fn codec_error<T: std::fmt::Debug>(r: ember::Result<T>, what: &str) -> String {
    match r {
        Err(Error::Codec(m)) => m,
        other => panic!("{what}: expected Error::Codec, got {other:?}"),
    }
}

fn task_failed<T: std::fmt::Debug>(r: ember::Result<T>, what: &str) -> (String, String) {
    match r {
        Err(Error::TaskFailed {
            type_name, message, ..
        }) => (type_name, message),
        other => panic!("{what}: expected TaskFailed, got {other:?}"),
    }
}

#[derive(Serialize)]
struct Holder {
    t: Table,
}

const EXPORTER: &str = r#"
import sys
import pyarrow as pa
import pyarrow.compute as pc
import ember
from ember import cross_language

ember.init(address="auto")

def describe(t):
    small = t.num_rows <= 1000
    return {
        "type": type(t).__module__ + "." + type(t).__name__,
        "names": t.column_names,
        "types": [str(f.type) for f in t.schema],
        "rows": t.num_rows,
        "x": t.column("x").to_pylist() if small else None,
        "y": t.column("y").to_pylist() if small else None,
        "s": t.column("s").to_pylist() if small else None,
        "sum": pc.sum(t.column("x")).as_py(),
        "nulls": t.column("y").null_count,
    }

def make(n):
    return pa.table({
        "x": pa.array(range(n), pa.int64()),
        "y": pa.array([None if i % 3 == 0 else i / 2 for i in range(n)], pa.float64()),
        "s": pa.array([f"r{i}" for i in range(n)], pa.string()),
    })

cross_language.export(describe, "arrow.describe")
cross_language.export(make, "arrow.make")
check = cross_language.python_function("arrow.make").remote(2)
assert ember.get(check).num_rows == 2
print("ready", flush=True)
sys.stdin.read()
"#;

#[derive(Deserialize, Debug)]
struct Described {
    #[serde(rename = "type")]
    type_name: String,
    names: Vec<String>,
    types: Vec<String>,
    rows: i64,
    x: Option<Vec<i64>>,
    y: Option<Vec<Option<f64>>>,
    s: Option<Vec<String>>,
    sum: i64,
    nulls: i64,
}

fn check_described(d: &Described, want: &Table) {
    assert_eq!(d.type_name, "pyarrow.lib.Table");
    assert_eq!(d.names, ["x", "y", "s"]);
    assert_eq!(d.types, ["int64", "double", "string"]);
    assert_eq!(d.rows as usize, want.num_rows());
    let (x, y, s) = columns(want);
    assert_eq!(d.sum, x.iter().sum::<i64>());
    assert_eq!(d.nulls as usize, y.iter().filter(|v| v.is_none()).count());
    if want.num_rows() <= 1000 {
        assert_eq!(d.x.as_ref(), Some(&x));
        assert_eq!(d.y.as_ref(), Some(&y));
        assert_eq!(d.s.as_ref(), Some(&s));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_and_python_exchange_arrow_tables() {
    let python = common::python();
    assert!(
        python.exists(),
        "{} is missing (make build)",
        python.display()
    );
    let node = TestNode::start();
    let mut cmd = Command::new(&python);
    cmd.arg("-c").arg(EXPORTER);
    let _exporter = ServingProcess::spawn(cmd, &node, "the Python exporter", T).await;
    let client = Client::connect(node.options()).await.expect("connect");
    let describe = Function::python("arrow.describe");
    let make = Function::python("arrow.make");

    // A put table is an ARROW object: Python reads it as a pyarrow.Table.
    let small = table(1000, 300);
    let r = client.put(&small).await.unwrap();
    let (format, bytes) = r.get_bytes().await.unwrap();
    assert_eq!(format, ValueFormat::Arrow);
    assert_eq!(bytes, small.to_ipc().unwrap());
    assert_same(&r.get().await.unwrap(), &small);
    let d = client.call::<Described>(&describe, (&r,)).await.unwrap();
    check_described(&d.get_timeout(T).await.unwrap(), &small);
    // As an argument by value (inline), and one large enough to go
    // through shared memory.
    let d = client
        .call::<Described>(&describe, (small.clone(),))
        .await
        .unwrap();
    check_described(&d.get_timeout(T).await.unwrap(), &small);
    let big = table(300_000, 65_536);
    assert!(big.to_ipc().unwrap().len() > client.node().max_inline_bytes as usize);
    let d = client.call::<Described>(&describe, (&big,)).await.unwrap();
    check_described(&d.get_timeout(T).await.unwrap(), &big);
    assert!(client.stats().shm_writes >= 1);

    // A pyarrow.Table returned by Python is a Table here, inline or
    // through shared memory.
    for n in [0i64, 5, 1000, 300_000] {
        let r = client.call::<Table>(&make, (n,)).await.unwrap();
        let got = r.get_timeout(T).await.unwrap();
        assert_same(&got, &table(n, 1 << 20));
        assert_eq!(r.get_bytes().await.unwrap().0, ValueFormat::Arrow);
    }

    // The wrong format either way is a clear codec error.
    let r = client.call::<Table>(&make, (3,)).await.unwrap();
    let m = codec_error(r.cast::<i64>().get_timeout(T).await, "ARROW read as i64");
    assert!(m.contains("ARROW") && m.contains("i64"), "{m}");
    let d = client
        .call::<Described>(&describe, (&small,))
        .await
        .unwrap();
    let m = codec_error(
        d.cast::<Table>().get_timeout(T).await,
        "msgpack read as a Table",
    );
    assert!(m.contains("ARROW value"), "{m}");
    // A table inside another value has no msgpack form.
    let m = codec_error(
        client
            .call::<i64>(&describe, (Holder { t: small.clone() },))
            .await,
        "a table in a struct",
    );
    assert!(m.contains("whole value"), "{m}");
    let m = codec_error(client.put(&vec![small.clone()]).await, "a Vec of tables");
    assert!(m.contains("whole value"), "{m}");
}

const CALLER: &str = r#"
import json
import pyarrow as pa
import ember
from ember import cross_language

ember.init(address="auto")
t = pa.table({"x": pa.array([1, 2, 3], pa.int64()), "y": pa.array([0.5, None, 1.5]),
              "s": pa.array(["a", "b", "c"])})
out = ember.get(cross_language.rust_function("arrow.double").remote(t))
rows = ember.get(cross_language.rust_function("arrow.rows").remote(t))
made = ember.get(cross_language.rust_function("arrow.make").remote(4))
print(json.dumps({
    "type": type(out).__name__,
    "x": out.column("x").to_pylist(),
    "y": out.column("y").to_pylist(),
    "rows": rows,
    "made": made.column("s").to_pylist(),
}), flush=True)
"#;

struct Acc {
    rows: usize,
}

fn table_worker() -> Worker {
    let mut w = Worker::new();
    w.register("arrow.double", |t: Table| -> Result<Table, String> {
        Ok(doubled(&t))
    });
    w.register("arrow.rows", |t: Table| -> Result<usize, String> {
        Ok(t.num_rows())
    });
    w.register("arrow.make", |n: i64| -> Result<Table, String> {
        Ok(table(n, 100_000))
    });
    w.register("arrow.maybe", |t: Option<Table>| -> Result<i64, String> {
        Ok(t.map_or(-1, |t| t.num_rows() as i64))
    });
    w.register("arrow.in_a_vec", |n: i64| -> Result<Vec<Table>, String> {
        Ok(vec![table(n, 10)])
    });
    w.register("add_one", |x: i64| -> Result<i64, String> { Ok(x + 1) });
    w.register_async("arrow.double_async", |t: Table| async move {
        tokio::task::yield_now().await;
        Ok::<_, String>(doubled(&t))
    });
    w.register_actor("arrow.Acc", |_: ()| Ok::<_, String>(Acc { rows: 0 }))
        .method("add", |a: &mut Acc, t: Table| -> Result<usize, String> {
            a.rows += t.num_rows();
            Ok(a.rows)
        })
        .method("last", |a: &mut Acc, n: i64| -> Result<Table, String> {
            Ok(table(n + a.rows as i64, 7))
        });
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_worker_takes_and_returns_tables() {
    let node = TestNode::start();
    let _serving = table_worker()
        .start(ServeOptions::new(node.options()).concurrency(8))
        .await
        .expect("serve");
    let client = Client::connect(node.options()).await.expect("connect");
    let f = |name: &str| Function::rust(name);

    // Small (inline both ways) and large (the argument and the result go
    // through shared memory), sync and async.
    for (n, name) in [
        (10, "arrow.double"),
        (300_000, "arrow.double"),
        (10, "arrow.double_async"),
        (300_000, "arrow.double_async"),
    ] {
        let t = table(n, 50_000);
        let r = client.call::<Table>(&f(name), (&t,)).await.unwrap();
        let got = r.get_timeout(T).await.unwrap();
        assert_same(&got, &doubled(&t));
        assert_eq!(got.schema, t.schema, "{name}");
    }
    let reads = client.stats().shm_reads;
    assert!(
        reads >= 2,
        "large results read from shared memory ({reads})"
    );

    // Results as arguments by reference, puts by reference.
    let made = client
        .call::<Table>(&f("arrow.make"), (250_000,))
        .await
        .unwrap();
    let twice = client
        .call::<Table>(&f("arrow.double"), (&made,))
        .await
        .unwrap();
    assert_same(
        &twice.get_timeout(T).await.unwrap(),
        &doubled(&table(250_000, 1)),
    );
    assert_same(&made.get().await.unwrap(), &table(250_000, 1));
    let put = client.put(&table(42, 5)).await.unwrap();
    let rows = client
        .call::<usize>(&f("arrow.rows"), (&put,))
        .await
        .unwrap();
    assert_eq!(rows.get_timeout(T).await.unwrap(), 42);
    // Option<Table>: a table, or nil.
    let some = client
        .call::<i64>(&f("arrow.maybe"), (&put,))
        .await
        .unwrap();
    assert_eq!(some.get_timeout(T).await.unwrap(), 42);
    let none = client
        .call::<i64>(&f("arrow.maybe"), (None::<Table>,))
        .await
        .unwrap();
    assert_eq!(none.get_timeout(T).await.unwrap(), -1);

    // An actor's methods too.
    let acc = client
        .create_actor(&ember::Class::rust("arrow.Acc"), ((),))
        .await
        .unwrap();
    let total = acc.call::<usize>("add", (table(5, 2),)).await.unwrap();
    assert_eq!(total.get_timeout(T).await.unwrap(), 5);
    let total = acc.call::<usize>("add", (&put,)).await.unwrap();
    assert_eq!(total.get_timeout(T).await.unwrap(), 47);
    let last = acc.call::<Table>("last", (3,)).await.unwrap();
    assert_same(&last.get_timeout(T).await.unwrap(), &table(50, 1));

    // Wrong formats: the function does not run.
    let (t, m) = task_failed(
        client
            .call::<usize>(&f("arrow.rows"), (5,))
            .await
            .unwrap()
            .get_timeout(T)
            .await,
        "an int for a Table",
    );
    assert_eq!(t, "ArgumentError");
    assert!(m.contains("ARROW value"), "{m}");
    let (t, m) = task_failed(
        client
            .call::<i64>(&f("add_one"), (table(3, 3),))
            .await
            .unwrap()
            .get_timeout(T)
            .await,
        "a Table for an int",
    );
    assert_eq!(t, "ArgumentError");
    assert!(m.contains("ARROW") && m.contains("i64"), "{m}");
    let (t, m) = task_failed(
        client
            .call::<i64>(&f("arrow.in_a_vec"), (3,))
            .await
            .unwrap()
            .get_timeout(T)
            .await,
        "a Table inside the result",
    );
    assert_eq!(t, "ReturnValueError");
    assert!(m.contains("whole value"), "{m}");

    // Python calls the worker with a pyarrow.Table and gets tables back.
    let python = common::python();
    assert!(
        python.exists(),
        "{} is missing (make build)",
        python.display()
    );
    let output = tokio::time::timeout(
        T,
        tokio::process::Command::new(&python)
            .arg("-c")
            .arg(CALLER)
            .env("EMBER_TMPDIR", &node.root)
            .env_remove("EMBER_ADDRESS")
            .env_remove("EMBER_TOKEN")
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("the Python caller finished in time")
    .expect("run python");
    assert!(
        output.status.success(),
        "the Python caller failed: {}",
        output.status
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from Python");
    assert_eq!(
        out,
        serde_json::json!({
            "type": "Table",
            "x": [2, 4, 6],
            "y": [0.5, null, 1.5],
            "rows": 3,
            "made": ["r0", "r1", "r2", "r3"],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flight_pulls_tables_over_the_nodes_flight_service() {
    let node = TestNode::start();
    let serving = table_worker()
        .start(ServeOptions::new(node.options()))
        .await
        .expect("serve");
    let client = Client::connect(node.options()).await.expect("connect");
    assert!(!client.is_remote());

    // ~50 MB, put through shared memory, pulled over Flight by a client of
    // the Unix socket.
    let rows = 1_800_000;
    let big = table(rows, 1 << 20);
    let size = big.to_ipc().unwrap().len();
    assert!(size > 45 << 20, "{size} bytes");
    let r = client.put(&big).await.unwrap();
    assert_eq!(client.stats().shm_writes, 1);
    let pulled = client.flight_get(&r).await.unwrap();
    assert_same(&pulled, &big);
    assert_eq!(pulled.schema.fields(), big.schema.fields());
    assert_eq!(client.stats().flight_reads, 1);
    assert_same(&r.get().await.unwrap(), &big);
    drop(r);

    // Small objects (inline in the node) too, and an empty table.
    let small = client.put(&table(3, 3)).await.unwrap();
    assert_same(&small.flight_get().await.unwrap(), &table(3, 3));
    let empty = client.put(&table(0, 1)).await.unwrap();
    let got = client.flight_get(&empty).await.unwrap();
    assert_eq!(got.num_rows(), 0);
    assert_eq!(got.schema.fields(), table(0, 1).schema.fields());

    // A result, once ready.
    let made = client
        .call::<Table>(&Function::rust("arrow.make"), (rows,))
        .await
        .unwrap();
    assert_same(&client.flight_get(&made).await.unwrap(), &big);

    // A msgpack object comes as the Flight service sends it: its bytes in
    // a binary column, the format in the schema's metadata.
    let m = client.put(&vec![1i64, 2, 3]).await.unwrap();
    let got = client.flight_get(&m).await.unwrap();
    assert_eq!(got.schema.field(0).name(), "data");
    assert_eq!(got.schema.field(0).data_type(), &DataType::Binary);
    assert_eq!(
        got.schema
            .metadata()
            .get("ember.format")
            .map(String::as_str),
        Some("msgpack")
    );
    // A failed task fails the pull as it fails a get.
    let failed = client
        .call::<Table>(&Function::rust("arrow.rows"), (1,))
        .await
        .unwrap();
    let (t, _) = task_failed(client.flight_get(&failed).await, "a failed task");
    assert_eq!(t, "ArgumentError");

    // A client over gRPC: Flight on its own channel, for pulls and for
    // large values it gets.
    let remote = Client::connect(Options {
        address: Some(node.info.address.clone()),
        token: Some(node.info.token.clone()),
        force_remote: true,
        ..node.options()
    })
    .await
    .expect("connect over gRPC");
    assert!(remote.is_remote());
    let made = remote
        .call::<Table>(&Function::rust("arrow.make"), (rows,))
        .await
        .unwrap();
    assert_same(&remote.flight_get(&made).await.unwrap(), &big);
    assert_same(&made.get_timeout(T).await.unwrap(), &big);
    assert_eq!(remote.stats().flight_reads, 2);
    let small = remote.put(&table(10, 4)).await.unwrap();
    assert_same(&remote.flight_get(&small).await.unwrap(), &table(10, 4));
    let twice = remote
        .call::<Table>(&Function::rust("arrow.double"), (&table(1000, 100),))
        .await
        .unwrap();
    assert_same(
        &twice.get_timeout(T).await.unwrap(),
        &doubled(&table(1000, 1)),
    );

    drop(serving);
}
