//! The shared msgpack vectors (tests/vectors/msgpack.json): for every
//! vector, the value built from its description encodes to exactly `hex`,
//! and `hex` decodes back to the value, both as a dynamic `ember::Value` and
//! as the typed Rust value of the documented mapping.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use ember::codec::{from_msgpack, to_msgpack};
use ember::{ByteBuf, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

fn vectors() -> Vec<Json> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/msgpack.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let doc: Json = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["format"], "msgpack");
    let vectors = doc["vectors"].as_array().expect("vectors").clone();
    assert!(vectors.len() >= 30, "only {} vectors", vectors.len());
    vectors
}

/// The dynamic value a description stands for.
fn build(desc: &Json) -> Value {
    match desc["type"].as_str().expect("type") {
        "nil" => Value::Nil,
        "bool" => Value::Boolean(desc["value"].as_bool().expect("bool")),
        "int" => {
            let v = &desc["value"];
            if let Some(u) = v.as_u64() {
                Value::from(u)
            } else {
                Value::from(v.as_i64().expect("int in 64 bits"))
            }
        }
        "float" => Value::F64(desc["value"].as_f64().expect("float")),
        "str" => Value::from(desc["value"].as_str().expect("str")),
        "bytes" => Value::Binary(hex::decode(desc["hex"].as_str().expect("hex")).expect("hex")),
        "list" => Value::Array(
            desc["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(build)
                .collect(),
        ),
        "map" => Value::Map(
            desc["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| (build(&e[0]), build(&e[1])))
                .collect(),
        ),
        other => panic!("unknown type {other}"),
    }
}

fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, value: T, hex: &str) {
    let encoded = hex::encode(to_msgpack(&value).unwrap());
    assert_eq!(
        encoded,
        hex,
        "{name}: {} {value:?} encodes wrongly",
        std::any::type_name::<T>()
    );
    let decoded: T = from_msgpack(&hex::decode(hex).unwrap())
        .unwrap_or_else(|e| panic!("{name}: decoding into {}: {e}", std::any::type_name::<T>()));
    assert_eq!(decoded, value, "{name}: decodes wrongly");
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct StrKeys {
    a: i64,
    b: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Meta {
    step: i64,
    blob: ByteBuf,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Policy {
    name: String,
    weights: Vec<f64>,
    meta: Meta,
}

#[test]
fn every_vector_encodes_and_decodes_as_a_dynamic_value() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let hex = v["hex"].as_str().unwrap();
        let value = build(&v["value"]);
        check(name, value, hex);
    }
}

#[test]
fn every_vector_encodes_and_decodes_as_a_typed_value() {
    let mut checked = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let hex = v["hex"].as_str().unwrap();
        let desc = &v["value"];
        let before = checked;
        match desc["type"].as_str().unwrap() {
            "nil" => {
                check(name, (), hex);
                check(name, None::<i64>, hex);
                checked += 1;
            }
            "bool" => {
                check(name, desc["value"].as_bool().unwrap(), hex);
                checked += 1;
            }
            "int" => {
                if let Some(i) = desc["value"].as_i64() {
                    check(name, i, hex);
                    checked += 1;
                    if let Ok(small) = i32::try_from(i) {
                        check(name, small, hex);
                    }
                }
                if let Some(u) = desc["value"].as_u64() {
                    check(name, u, hex);
                    checked += 1;
                }
            }
            "float" => {
                let f = desc["value"].as_f64().unwrap();
                check(name, f, hex);
                if (f as f32) as f64 == f {
                    // An f32 is widened: the same bytes.
                    assert_eq!(
                        hex::encode(to_msgpack(&(f as f32)).unwrap()),
                        hex,
                        "{name} as f32"
                    );
                }
                checked += 1;
            }
            "str" => {
                check(name, desc["value"].as_str().unwrap().to_string(), hex);
                checked += 1;
            }
            "bytes" => {
                let b = hex::decode(desc["hex"].as_str().unwrap()).unwrap();
                if !b.is_empty() {
                    // A plain Vec<u8> is bin too.
                    check(name, b.clone(), hex);
                }
                check(name, ByteBuf::from(b), hex);
                checked += 1;
            }
            "list" => {
                let items = desc["items"].as_array().unwrap();
                if items.iter().all(|i| i["type"] == "int") {
                    let ints: Vec<i64> =
                        items.iter().map(|i| i["value"].as_i64().unwrap()).collect();
                    check(name, ints, hex);
                    checked += 1;
                } else if name == "list mixed" {
                    check(name, (1i64, "two".to_string(), 3.5f64, None::<i64>), hex);
                    checked += 1;
                }
            }
            "map" => match name {
                "map empty" => {
                    check(name, BTreeMap::<String, i64>::new(), hex);
                    checked += 1;
                }
                "map str keys" => {
                    check(name, StrKeys { a: 1, b: true }, hex);
                    checked += 1;
                }
                "map nested" => {
                    let p = Policy {
                        name: "policy".into(),
                        weights: vec![0.25, -1.0],
                        meta: Meta {
                            step: 42,
                            blob: ByteBuf::from(vec![1, 2]),
                        },
                    };
                    check(name, p, hex);
                    checked += 1;
                }
                _ => {}
            },
            other => panic!("unknown type {other}"),
        }
        assert!(
            checked > before,
            "vector {name:?} has no typed check: add one"
        );
    }
}
