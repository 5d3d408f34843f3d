//! Rust calls Python: a Python program exports functions by name
//! (`ember.cross_language.export`), the Rust client calls them with typed
//! arguments and reads typed results; a Python exception arrives as
//! `Error::TaskFailed` with the exception's type and message.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestNode;
use ember::{ByteBuf, Client, Error, Function, Language, Value};
use serde::{Deserialize, Serialize};

const SCRIPT: &str = r#"
import sys
import ember
from ember import cross_language

ember.init(address="auto")

def predict(features, scale):
    return {"score": sum(features) * scale, "n": len(features), "tag": b"\x00\xff"}

def describe(value):
    return [type(value).__name__, value]

def boom(x):
    raise ValueError(f"bad value {x}")

cross_language.export(predict, "scoring.predict")
cross_language.export(describe, "debug.describe")
cross_language.export(boom, "scoring.boom")
# The node has them once a call by name works from here too.
check = cross_language.python_function("scoring.predict").remote([1.0], 1.0)
assert ember.get(check)["n"] == 1
print("ready", flush=True)
sys.stdin.read()
"#;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Score {
    score: f64,
    n: u32,
    tag: ByteBuf,
}

fn python_export_available() -> bool {
    let path = common::workspace().join("sdk-python/src/ember/cross_language.py");
    std::fs::read_to_string(path).is_ok_and(|s| s.contains("def export"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_calls_a_function_exported_from_python() {
    if !python_export_available() {
        eprintln!("skipped: ember.cross_language.export is not in the Python SDK yet");
        return;
    }
    let python = common::python();
    assert!(
        python.exists(),
        "{} is missing (make build)",
        python.display()
    );
    let node = TestNode::start();
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .env("EMBER_TMPDIR", &node.root)
        .env_remove("EMBER_ADDRESS")
        .env_remove("EMBER_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python");
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .expect("the Python exporter was not ready in 120 s")
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), "ready", "the Python exporter failed");

    let client = Client::connect(node.options()).await.expect("connect");
    let r = client
        .call::<Score>(
            &Function::python("scoring.predict"),
            (vec![1.0, 2.0, 3.5], 2.0),
        )
        .await
        .unwrap();
    assert_eq!(
        r.get_timeout(Duration::from_secs(60)).await.unwrap(),
        Score {
            score: 13.0,
            n: 3,
            tag: ByteBuf::from(vec![0, 255]),
        }
    );

    // How Rust values look in Python.
    let cases: Vec<(Value, &str)> = vec![
        (Value::from(7), "int"),
        (Value::F64(1.5), "float"),
        (Value::from("s"), "str"),
        (Value::Binary(vec![1, 2]), "bytes"),
        (Value::Nil, "NoneType"),
        (Value::Boolean(true), "bool"),
        (Value::Array(vec![Value::from(1)]), "list"),
        (Value::Map(vec![(Value::from("k"), Value::from(1))]), "dict"),
    ];
    for (value, type_name) in cases {
        let r = client
            .call::<(String, Value)>(&Function::python("debug.describe"), (&value,))
            .await
            .unwrap();
        let (t, back) = r.get_timeout(Duration::from_secs(60)).await.unwrap();
        assert_eq!(t, type_name, "{value:?}");
        assert_eq!(back, value);
    }

    let r = client
        .call::<i64>(&Function::python("scoring.boom"), (3,))
        .await
        .unwrap();
    match r.get_timeout(Duration::from_secs(60)).await {
        Err(Error::TaskFailed {
            language,
            type_name,
            message,
            ..
        }) => {
            assert_eq!(language, Language::Python);
            assert_eq!(type_name, "ValueError");
            assert!(message.contains("bad value 3"), "{message}");
        }
        other => panic!("expected TaskFailed from Python, got {other:?}"),
    }
    drop(child.stdin.take());
    let _ = child.wait();
}

const CALLER: &str = r#"
import json
import ember
from ember import cross_language

ember.init(address="auto")
add = cross_language.rust_function("add")
greet = cross_language.rust_function("greet")
fail = cross_language.rust_function("fail")
out = {
    "add": ember.get(add.remote(40, 2)),
    "greet": ember.get(greet.remote({"name": "ada", "langs": ["rust", "python"]})),
    "bytes": ember.get(cross_language.rust_function("reverse").remote(b"\x01\x02\x03")).hex(),
}
try:
    ember.get(fail.remote("x"))
    out["fail"] = None
except Exception as e:
    out["fail"] = [type(e).__name__, str(e)]
print(json.dumps(out), flush=True)
"#;

#[derive(Deserialize)]
struct Who {
    name: String,
    langs: Vec<String>,
}

#[derive(Serialize)]
struct Hello {
    text: String,
    count: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_calls_functions_served_by_a_rust_worker() {
    if !python_export_available() {
        eprintln!("skipped: ember.cross_language is not in the Python SDK yet");
        return;
    }
    let node = TestNode::start();
    let mut worker = ember::Worker::new();
    worker.register("add", |a: i64, b: i64| -> Result<i64, String> { Ok(a + b) });
    worker.register("greet", |w: Who| -> Result<Hello, String> {
        Ok(Hello {
            text: format!("hello {}", w.name),
            count: w.langs.len(),
        })
    });
    worker.register("reverse", |b: ByteBuf| -> Result<ByteBuf, String> {
        Ok(ByteBuf::from(b.iter().rev().copied().collect::<Vec<u8>>()))
    });
    worker.register("fail", |s: String| -> Result<i64, String> {
        Err(format!("no number in {s:?}"))
    });
    let _serving = worker
        .start(ember::ServeOptions::new(node.options()))
        .await
        .expect("serve");
    let python = common::python();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
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
    .expect("the Python caller finished in 120 s")
    .expect("run python");
    assert!(
        output.status.success(),
        "the Python caller failed: {}",
        output.status
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from Python");
    assert_eq!(out["add"], 42);
    assert_eq!(out["greet"]["text"], "hello ada");
    assert_eq!(out["greet"]["count"], 2);
    assert_eq!(out["bytes"], "030201");
    let fail = out["fail"]
        .as_array()
        .expect("the Rust error raised in Python");
    assert!(
        fail[1].as_str().unwrap().contains("no number in \\\"x\\\"")
            || fail[1].as_str().unwrap().contains("no number in \"x\""),
        "{fail:?}"
    );
}
