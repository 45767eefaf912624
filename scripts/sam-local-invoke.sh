#!/usr/bin/env bash
# `sam local invoke` for all four functions, with the events/ files, against
# a local S3, offline; each judged by the bytes that land in the local S3 and
# the JSON the function returned (never by SAM's exit code).
#
#   1. installs what is missing: the pinned SAM CLI, cargo-lambda and zig
#      into .venv/ (scripts/tools.sh), Debian's docker.io
#   2. Docker: the daemon DOCKER_HOST (or the default socket) answers on, else
#      a dockerd of its own, host network only, stopped by its pid on exit
#   3. the Lambda base image: public.ecr.aws/lambda/provided:al2023 when it
#      is there (S3MM_PULL=1 pulls it), else one built offline from Debian
#      packages (scripts/containers.sh)
#   4. sam build --parameter-overrides Architecture=x86_64, unless
#      .aws-sam/build is newer than every source
#   5. local-s3 on 127.0.0.1 (a free port), reached by the functions through
#      AWS_ENDPOINT_URL_S3 in --env-vars (.aws-sam/local-env.json)
#   6. scripts/sam_local_invoke.py: seeds the objects the events name, runs
#      `sam local invoke` per event (through scripts/sam_host_network.py,
#      which puts the container on the host network: aws-sam-cli #4236),
#      and checks each
#   7. `sam local start-lambda` (the same way), and the AWS CLI's
#      `aws lambda invoke --endpoint-url` against it twice with the S3 event:
#      the object moved, then found moved (replaying an event is safe)
#
# Usage: bash scripts/sam-local-invoke.sh [--events DIR]
# Exits non-zero naming the function and what was wrong when a check fails.
# Everything it starts (dockerd and its containers, local-s3) is stopped by
# pid on exit, on failure and on Ctrl-C too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

EVENTS=events
while [ $# -gt 0 ]; do
  case "$1" in
    --events) EVENTS="$2"; shift 2 ;;
    *) echo "usage: $0 [--events DIR]" >&2; exit 2 ;;
  esac
done

source scripts/tools.sh
source scripts/containers.sh

local_run_begin s3mm-sam-local
# SAM hands the caller's credentials to the function: local-s3's key pair.
export AWS_ACCESS_KEY_ID=local-s3-access-key AWS_SECRET_ACCESS_KEY=local-s3-secret-key
export PATH="$ROOT/.venv/bin:$PATH"

step "tools (pinned) into .venv/"
pip_ensure .venv "aws-sam-cli==$SAM_CLI_VERSION" "ziglang==$ZIGLANG_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
echo "sam $(sam --version | awk '{print $NF}'), $(cargo lambda --version)"

step "docker"
containers_begin "$WORK"
lambda_base_image

step "sam build"
sam_build_if_stale "$WORK"

step "local-s3"
cargo build --locked --quiet -p local-s3
mkfifo "$WORK/s3.out"
target/debug/local-s3 --root "$WORK/s3" >"$WORK/s3.out" 2>"$WORK/s3.err" &
S3_PID=$!
LOCAL_PIDS+=("$S3_PID")
read -r first_line <"$WORK/s3.out" || true
ENDPOINT="${first_line#endpoint=}"
case "$ENDPOINT" in
  http://127.0.0.1:*) echo "local-s3 $ENDPOINT (pid $S3_PID)" ;;
  *) cat "$WORK/s3.err" >&2; echo "local-s3 did not start" >&2; exit 1 ;;
esac
# local-s3 writes its counters on exit; drain the pipe so it never blocks.
cat "$WORK/s3.out" >/dev/null &

step "sam local invoke: four functions, $EVENTS/"
# The functions reach local-s3 through the variable the template declares
# empty (SAM's --env-vars sets only declared variables).
printf '{"Parameters": {"AWS_ENDPOINT_URL_S3": "%s"}}\n' "$ENDPOINT" >.aws-sam/local-env.json
# SAM's output of each invocation, and the commands run (for the docs check).
LOGS=target/sam-local
rm -rf "$LOGS" && mkdir -p "$LOGS"
status=0
# SAM keeps lock files in the temporary directory: ours, removed on exit.
mkdir -p "$WORK/tmp"
TMPDIR="$WORK/tmp" .venv/bin/python scripts/sam_local_invoke.py \
  --endpoint "$ENDPOINT" --events "$EVENTS" --env-vars .aws-sam/local-env.json --log-dir "$LOGS" \
  --sam ".venv/bin/python scripts/sam_host_network.py" --sam-shown "python scripts/sam_host_network.py" \
  --parameter-overrides SourceBucketName=s3mm-demo-source DestBucketName=s3mm-demo-archive Architecture=x86_64 \
  -- --docker-network host --invoke-image "$LAMBDA_IMAGE" --skip-pull-image || status=$?

step "sam local start-lambda: aws lambda invoke --endpoint-url, twice (a replay finds the object moved)"
pip_ensure .venv-local-aws "awscli==$AWSCLI_VERSION"
LAMBDA_PORT="$(free_port)"
export LAMBDA_PORT
start_lambda='python scripts/sam_host_network.py local start-lambda --host 127.0.0.1 --port "$LAMBDA_PORT" \
  --env-vars .aws-sam/local-env.json \
  --parameter-overrides SourceBucketName=s3mm-demo-source DestBucketName=s3mm-demo-archive Architecture=x86_64 \
  --docker-network host --invoke-image '"$LAMBDA_IMAGE"' --skip-pull-image'
echo "$ $start_lambda &"
echo "$start_lambda" >>"$LOGS/commands.txt"
TMPDIR="$WORK/tmp" bash -c "exec $start_lambda" >"$LOGS/start-lambda.log" 2>&1 &
LOCAL_PIDS+=("$!")
lambda_pid=$!
deadline=$((SECONDS + 120))
until python3 -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=1)" "$LAMBDA_PORT" 2>/dev/null; do
  if ! kill -0 "$lambda_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 20 "$LOGS/start-lambda.log" >&2
    echo "FAIL sam local start-lambda did not listen on 127.0.0.1:$LAMBDA_PORT (log above)" >&2
    status=1
    break
  fi
  sleep 0.2
done
if kill -0 "$lambda_pid" 2>/dev/null && [ "$status" = 0 ]; then
  PATH="$ROOT/.venv-local-aws/bin:$PATH" .venv/bin/python scripts/sam_local_invoke.py \
    --endpoint "$ENDPOINT" --events "$EVENTS" --log-dir "$LOGS" --start-lambda-port "$LAMBDA_PORT" || status=$?
fi

if [ "$status" != 0 ]; then
  echo "sam-local-invoke: failed; SAM's output of each invocation is in $LOGS/" >&2
  exit "$status"
fi
printf '\nsam-local-invoke: passed in %ss\n' "$((SECONDS - started))"
