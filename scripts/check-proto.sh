#!/usr/bin/env bash
# Re-runs scripts/gen-proto.sh and fails if the committed generated code
# differs from what the generator makes now (CI runs this via `make test`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/gen-proto.sh

GENERATED=(proto/src/gen sdk-python/src/ember/v1 sdk-go/internal/pb)
changes="$(git status --porcelain --untracked-files=all -- "${GENERATED[@]}")"
if [[ -n "$changes" ]]; then
    echo "$changes" >&2
    git --no-pager diff --stat -- "${GENERATED[@]}" >&2 || true
    echo "generated protocol code is stale: run scripts/gen-proto.sh and commit" >&2
    exit 1
fi
echo "generated protocol code is up to date"
