// Package ember is the Go SDK of ember, a distributed execution framework
// with a Rust core (see the repository README).
//
// For now the package is a small facade over the wire contract: the protocol
// version, typed ids with the byte layouts the Rust core and the other SDKs
// use, and the framing of the local Unix-socket stream. The client (submit
// tasks, put and get objects) and the Go worker runtime (ServeWorker) come in
// a later issue; they will live here, with everything else under internal/.
//
// The protobuf messages are generated into internal/pb by
// scripts/gen-proto.sh from proto/ember/v1; do not edit them by hand.
package ember
