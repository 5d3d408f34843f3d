#!/usr/bin/env bash
# Generates all protocol code from proto/ember/v1/*.proto (no system protoc):
#
#   Rust    proto/src/gen/ember.v1.rs         tools/proto-gen (protox + tonic-prost-build)
#   Python  sdk-python/src/ember/v1/*_pb2.py(i) grpc_tools.protoc from the venv
#   Go      sdk-go/internal/pb/*.pb.go        grpc_tools.protoc + pinned Go plugins
#
# Every tool is pinned (Cargo.lock, sdk-python/requirements-dev.txt, the
# versions below), so running it twice gives the same bytes. The output is
# committed; scripts/check-proto.sh (run by `make test`) fails on a diff.
#
# Environment: VENV (default <repo>/.venv), CARGO (default cargo), GO (default go).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export LC_ALL=C # stable glob order

VENV="${VENV:-$ROOT/.venv}"
CARGO="${CARGO:-cargo}"
GO="${GO:-go}"
TOOLS_BIN="$ROOT/.tools/bin"

# Go plugin versions (module proxy); bump deliberately and regenerate.
PROTOC_GEN_GO_VERSION="v1.36.12"      # google.golang.org/protobuf
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"   # google.golang.org/grpc/cmd/protoc-gen-go-grpc
GO_MODULE="github.com/ember-run/ember/sdk-go"

die() { echo "gen-proto: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"; }

need "$CARGO" "install Rust (https://rustup.rs)"
need "$GO" "install Go 1.26 (https://go.dev/dl)"
PY="$VENV/bin/python"
[[ -x "$PY" ]] || die "no Python venv at $VENV: run 'make venv'"
"$PY" -c 'import grpc_tools.protoc' 2>/dev/null \
    || die "grpc_tools is missing from $VENV: run 'make venv'"

shopt -s nullglob
PROTOS=(proto/ember/v1/*.proto)
((${#PROTOS[@]})) || die "no .proto files under proto/ember/v1"

# --- Rust ------------------------------------------------------------------
# The output is already formatted by prettyplease (inside prost-build), whose
# version Cargo.lock pins. It is deliberately not passed through rustfmt: that
# would tie the bytes to the toolchain's rustfmt version and make them differ
# from a direct run of the generator. (cargo fmt does not descend into
# include!d files, so `make lint` does not check it either.)
"$CARGO" run --release -q -p ember-proto-gen -- "$ROOT"

# --- Python ----------------------------------------------------------------
PY_OUT=sdk-python/src/ember/v1
mkdir -p "$PY_OUT"
rm -f "$PY_OUT"/*_pb2.py "$PY_OUT"/*_pb2.pyi # drop outputs of deleted protos
[[ -e "$PY_OUT/__init__.py" ]] || : >"$PY_OUT/__init__.py"
"$PY" -m grpc_tools.protoc -Iproto \
    --python_out=sdk-python/src --pyi_out=sdk-python/src "${PROTOS[@]}"

# --- Go --------------------------------------------------------------------
# Install a plugin into .tools/bin unless that exact version is already there.
install_go_plugin() { # <binary> <module path of the binary> <package@version>
    local bin="$TOOLS_BIN/$1" mod="$2" pkg="$3" version="${3##*@}"
    if [[ -x "$bin" ]] && "$GO" version -m "$bin" 2>/dev/null \
        | grep -qE "^[[:space:]]+mod[[:space:]]+$mod[[:space:]]+$version([[:space:]]|$)"; then
        return
    fi
    echo "gen-proto: installing $pkg into .tools/bin" >&2
    GOBIN="$TOOLS_BIN" GOFLAGS=-mod=mod "$GO" install "$pkg"
}
mkdir -p "$TOOLS_BIN"
install_go_plugin protoc-gen-go google.golang.org/protobuf \
    "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
install_go_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc \
    "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"

GO_OUT=sdk-go/internal/pb
mkdir -p "$GO_OUT"
rm -f "$GO_OUT"/*.pb.go
"$PY" -m grpc_tools.protoc -Iproto \
    --plugin=protoc-gen-go="$TOOLS_BIN/protoc-gen-go" \
    --plugin=protoc-gen-go-grpc="$TOOLS_BIN/protoc-gen-go-grpc" \
    --go_out=sdk-go --go_opt=module="$GO_MODULE" \
    --go-grpc_out=sdk-go --go-grpc_opt=module="$GO_MODULE" \
    "${PROTOS[@]}"
