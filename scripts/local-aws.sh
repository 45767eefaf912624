#!/usr/bin/env bash
# The merge as a user runs it, `aws stepfunctions start-execution`, offline:
# the real AWS CLI against moto's server as a local AWS (S3, Lambda, Step
# Functions), which executes the project's real state machine definition
# (Distributed Map and its S3 ItemReader included) with each Task running
# the project's release binaries in a container. Then the move on upload:
# an S3 notification from moto invokes the mover.
#
#   1. installs what is missing: the pinned AWS CLI and moto into
#      .venv-local-aws/, SAM, cargo-lambda and zig into .venv/, docker.io
#   2. Docker (scripts/containers.sh): the running daemon or a dockerd of
#      its own, host network only; the Lambda base image; on it, the image
#      moto runs functions in (SAM's Runtime Interface Emulator under
#      scripts/moto-lambda-entry.sh)
#   3. sam build --parameter-overrides Architecture=x86_64 unless fresh
#   4. moto_server on 127.0.0.1 (a free port), with state machine execution on
#   5. scripts/local_aws.py: creates the stack's functions from
#      .aws-sam/build and the template, the state machine from
#      statemachine/csv-merge.asl.json with the template's substitutions, seeds
#      the CSVs, runs the AWS CLI commands of docs/deploy.md, and judges each
#      run by the bytes of the outputs and report.json
#
# Usage: bash scripts/local-aws.sh [--files N] [--tamper-output]
#   --tamper-output  for this script's own test (tests/local/run.sh): drops
#                    a row from merged-00001.csv after the merge, before the
#                    check, which must then fail naming it
# Exits non-zero naming the cause when an output is wrong. Everything it
# starts (moto, dockerd and its containers) is stopped by pid on exit, on
# failure and on Ctrl-C too.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --files) ARGS+=(--files "$2"); shift 2 ;;
    --tamper-output) ARGS+=(--tamper-output); shift ;;
    *) echo "usage: $0 [--files N] [--tamper-output]" >&2; exit 2 ;;
  esac
done

source scripts/tools.sh
source scripts/containers.sh

local_run_begin s3mm-local-aws
# moto accepts any key pair; these are nobody's.
export AWS_ACCESS_KEY_ID=local-aws-access-key AWS_SECRET_ACCESS_KEY=local-aws-secret-key
unset AWS_ENDPOINT_URL_S3
export PATH="$ROOT/.venv-local-aws/bin:$ROOT/.venv/bin:$PATH"

step "tools (pinned) into .venv-local-aws/ and .venv/"
pip_ensure .venv-local-aws "awscli==$AWSCLI_VERSION" "moto[server]==$MOTO_VERSION"
pip_ensure .venv "aws-sam-cli==$SAM_CLI_VERSION" "ziglang==$ZIGLANG_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
echo "$(aws --version 2>&1 | awk '{print $1}'), moto $MOTO_VERSION, sam $(sam --version | awk '{print $NF}')"

step "docker"
containers_begin "$WORK"
lambda_base_image
# moto copies function code into a volume with an image named busybox.
docker image inspect busybox:latest >/dev/null 2>&1 || docker tag "$LAMBDA_IMAGE" busybox:latest
MOTO_IMAGE=s3mm-moto-lambda:provided.al2023
mkdir -p "$WORK/image"
cp .venv/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64 "$WORK/image/aws-lambda-rie"
cp scripts/moto-lambda-entry.sh "$WORK/image/entry.sh"
chmod 755 "$WORK/image/aws-lambda-rie" "$WORK/image/entry.sh"
cat >"$WORK/image/Dockerfile" <<EOF
FROM $LAMBDA_IMAGE
COPY aws-lambda-rie entry.sh /var/rapid/
ENTRYPOINT ["/var/rapid/entry.sh"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t "$MOTO_IMAGE" "$WORK/image" >/dev/null 2>"$WORK/build.err" || { cat "$WORK/build.err" >&2; exit 1; }
echo "moto's Lambda image: $MOTO_IMAGE (SAM's Runtime Interface Emulator on $LAMBDA_IMAGE)"

step "sam build"
sam_build_if_stale "$WORK"

step "moto"
MOTO_PORT="$(free_port)"
# MOTO_PORT: moto's interpreter calls Lambda and S3 on its own port.
# MOTO_DOCKER_*: functions run in $MOTO_IMAGE on the host network.
MOTO_PORT="$MOTO_PORT" MOTO_DOCKER_LAMBDA_IMAGE="$MOTO_IMAGE" MOTO_DOCKER_NETWORK_MODE=host \
  moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
LOCAL_PIDS+=("$MOTO_PID")
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
until python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/moto-api/data.json', timeout=1)" "$AWS_ENDPOINT_URL" 2>/dev/null; do
  kill -0 "$MOTO_PID" 2>/dev/null || { tail -n 30 "$WORK/moto.log" >&2; echo "moto_server exited at start" >&2; exit 1; }
  sleep 0.2
done
echo "moto $AWS_ENDPOINT_URL (pid $MOTO_PID); the AWS CLI finds it through AWS_ENDPOINT_URL"

step "the merge through aws stepfunctions start-execution, the move on upload"
LOGS=target/local-aws
rm -rf "$LOGS" && mkdir -p "$LOGS"
status=0
.venv-local-aws/bin/python scripts/local_aws.py --endpoint "$AWS_ENDPOINT_URL" --log-dir "$LOGS" \
  ${ARGS[@]+"${ARGS[@]}"} || status=$?
cp "$WORK/moto.log" "$LOGS/moto.log"
if [ "$status" != 0 ]; then
  echo "local-aws: failed; moto's log and the commands' output are in $LOGS/" >&2
  exit "$status"
fi
printf '\nlocal-aws: passed in %ss\n' "$((SECONDS - started))"
