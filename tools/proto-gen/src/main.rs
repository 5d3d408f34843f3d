//! Compiles `proto/ember/v1/*.proto` with protox (a pure-Rust protobuf
//! compiler) and writes the prost + tonic code to `proto/src/gen/`.
//!
//! Usage: `ember-proto-gen <repo-root>`; called by `scripts/gen-proto.sh`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let proto_dir = root.join("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(proto_dir.join("ember/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    let fds = protox::compile(&files, [&proto_dir])?;
    let out_dir = root.join("proto/src/gen");
    std::fs::create_dir_all(&out_dir)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".ember.v1")
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    Ok(())
}
