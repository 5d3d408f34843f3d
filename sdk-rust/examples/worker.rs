//! An example Rust worker: serves a few functions and an actor class by
//! name, for other languages (and tests) to call.
//!
//! ```text
//! cargo build --release -p ember --example worker
//! target/release/examples/worker        # finds the local node like any client
//! ```
//!
//! It connects to the node through the usual discovery (`EMBER_ADDRESS` /
//! `EMBER_TOKEN`, else the newest live session under `EMBER_TMPDIR`, else
//! `/tmp/ember-<uid>`), serves, prints one line `ready` on stdout (flushed)
//! once the node serves its names, and exits 0 on SIGTERM or SIGINT (1 if
//! the connection to the node ends first, or it cannot connect).
//!
//! What it serves (the names and behaviours are relied on by the Go, Python
//! and Rust tests and examples: keep them):
//!
//! | name | arguments | result |
//! |---|---|---|
//! | function `rust.add` | `a: i64, b: i64` | `a + b` |
//! | function `rust.fail` | `msg: String` | always fails: `TASK_FAILED` with message `msg` |
//! | function `rust.word_count` | `text: String` | map word → count (`BTreeMap<String, i64>`): words split on whitespace, lower-cased |
//! | actor class `rust.Counter` | constructor `start: i64` | a counter at `start` |
//! | method `incr` | `by: i64` | adds `by`, returns the new value |
//! | method `get` | | the value |
//! | method `fail` | `msg: String` | always fails with message `msg` (the counter stays) |
//! | method `pid` | | this process's id (`i64`) |

use std::collections::BTreeMap;
use std::io::Write;

use ember::{ServeOptions, Worker};
use tokio::signal::unix::{signal, SignalKind};

struct Counter {
    value: i64,
}

fn worker() -> Worker {
    let mut w = Worker::new();
    w.register("rust.add", |a: i64, b: i64| -> Result<i64, String> {
        Ok(a + b)
    });
    w.register("rust.fail", |msg: String| -> Result<(), String> {
        Err(msg)
    });
    w.register(
        "rust.word_count",
        |text: String| -> Result<BTreeMap<String, i64>, String> {
            let mut counts = BTreeMap::new();
            for word in text.split_whitespace() {
                *counts.entry(word.to_lowercase()).or_insert(0) += 1;
            }
            Ok(counts)
        },
    );
    w.register_actor("rust.Counter", |start: i64| {
        Ok::<_, String>(Counter { value: start })
    })
    .method("incr", |c: &mut Counter, by: i64| -> Result<i64, String> {
        c.value += by;
        Ok(c.value)
    })
    .method("get", |c: &mut Counter| -> Result<i64, String> {
        Ok(c.value)
    })
    .method(
        "fail",
        |_c: &mut Counter, msg: String| -> Result<(), String> { Err(msg) },
    )
    .method("pid", |_c: &mut Counter| -> Result<i64, String> {
        Ok(std::process::id() as i64)
    });
    w
}

#[tokio::main]
async fn main() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let serving = match worker().start(ServeOptions::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("worker: cannot serve: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        why = serving.closed() => {
            eprintln!("worker: the connection to the node ended: {why}");
            std::process::exit(1);
        }
    }
    serving.stop().await;
}
