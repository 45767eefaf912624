#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, the
# whole workspace's tests against local-s3 over HTTP (including the ones
# that drive the Lambda binaries under cargo-lambda's runtime emulator), the
# template, security and state machine checks with `sam build`, the end-to-end run
# of the state machine over the real binaries, and the commands users type
# (`sam local invoke`, `aws stepfunctions start-execution`) with the functions in
# Docker containers (tests/local/run.sh; Debian's docker.io is installed if
# missing), then a check that every such command the docs show was run.
# This is the README's test command and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/tools.sh

# Each step says how long the one before it took, and the last line the total.
started=$SECONDS
step_start=""
step() {
  [ -z "$step_start" ] || printf '   (%ss)\n' "$((SECONDS - step_start))"
  printf '\n== %s\n' "$*"
  step_start=$SECONDS
}

step "tools into .venv/ (and pandas, duckdb into .venv-readers/)"
pip_ensure .venv "cargo-lambda==$CARGO_LAMBDA_VERSION"
pip_ensure .venv-readers "pandas==$PANDAS_VERSION" "duckdb==$DUCKDB_VERSION"
export PATH="$PWD/.venv/bin:$PATH"
cargo --version
cargo lambda --version

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the cost model's durations and the template's MemorySize are what the newest Lambda-share bench gives"
python3 bench/charts.py --check

step "cargo test (including the cargo-lambda tests)"
# The binaries must exist before the tests that start them as processes.
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --include-ignored

step "template, security and state machine: cfn-lint, sam validate --lint, checkov, tests/template, asl-validator, sam build"
bash scripts/check-deploy.sh

step "end to end: the state machine under aws-local-stepfunctions over the Lambda binaries"
# The debug binaries built above; `bash tests/e2e/run.sh` alone builds release ones.
S3MM_E2E_PROFILE=debug bash tests/e2e/run.sh

step "sam local invoke and aws stepfunctions start-execution, functions in containers (reusing that sam build)"
bash tests/local/run.sh

step "every sam local / aws stepfunctions command in the docs was run"
python3 scripts/check-doc-commands.py
printf '   (%ss)\n\nscripts/test.sh: every test passed in %ss\n' "$((SECONDS - step_start))" "$((SECONDS - started))"
