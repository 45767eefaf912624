#!/usr/bin/env bash
# Tests of scripts/sam-local-invoke.sh and scripts/local-aws.sh, run as a
# user runs them, after the unit tests of their helpers (test_helpers.py):
#   0. sam-local-invoke interrupted with Ctrl-C while a function runs;
#   1. sam-local-invoke with one event made wrong on purpose (an SQS message
#      whose body is cut short): exits non-zero, names MoverFunction and the
#      event, and still passes the eight other invocations;
#   2. sam-local-invoke as it is: exits 0, one `ok` line per invocation
#      (and one for `aws lambda invoke` on `sam local start-lambda`);
#   3. local-aws with one output tampered with after the run (--tamper-output):
#      exits non-zero naming that output;
#   4. local-aws as it is: exits 0, every check `ok`.
# After each: no process the script started is left (dockerd, containerd and
# its shims, containers, local-s3, moto: nothing whose command line names
# the script's work directory or port), and nothing is left mounted.
# Each run's output is kept in target/local-test/NAME.log.
# The good runs go last: scripts/check-doc-commands.py reads the commands
# they ran (target/sam-local/commands.txt, target/local-aws/commands.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."

TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/s3mm-local-test.XXXXXX")"
mkdir -p target/local-test
trap 'rm -rf "$TMP_ROOT"' EXIT
passed=0
failed=0
check() {
  local what="$1" ok="$2" detail="${3:-}"
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
    echo "ok - $what${detail:+ # $detail}"
  else
    failed=$((failed + 1))
    echo "not ok - $what${detail:+ # $detail}"
  fi
}

# run NAME SCRIPT ARGS...: runs the script with its work directory under
# $TMP_ROOT/NAME; sets $status and $out (stdout and stderr).
run() {
  local name="$1"
  shift
  mkdir -p "$TMP_ROOT/$name"
  out="target/local-test/$name.log"
  status=0
  S3MM_LOCAL_TMP="$TMP_ROOT/$name" bash "$@" >"$out" 2>&1 || status=$?
  grep -E '^(ok|FAIL) ' "$out" | sed 's/^/    /' || true
  [ "$status" = 0 ] || { echo "    (exit $status; the log's last lines:)"; tail -n 12 "$out" | sed 's/^/    | /'; }
}

# nothing_left NAME: no process names the run's work directory or its
# dockerd's exec root, nothing is mounted under either, and both are gone.
# The exec root is the one the run's log names (dockerd's sockets live in a
# short /tmp/s3mm-dockerd.* folder of their own): another run on the same
# machine has its own, and is not this run's leftover.
nothing_left() {
  local dir="$TMP_ROOT/$1" exec_root procs mounts
  exec_root="$(grep -o 'sockets under /tmp/s3mm-dockerd\.[A-Za-z0-9]*' "target/local-test/$1.log" | head -n 1 | cut -d' ' -f3 || true)"
  procs="$(python3 tests/local/leftovers.py "$dir" ${exec_root:+"$exec_root"})"
  mounts="$(grep -c -F -e "$dir" ${exec_root:+-e "$exec_root"} /proc/mounts || true)"
  check "$1: no process, container or mount left" "$([ -z "$procs" ] && [ "$mounts" = 0 ] && echo 1 || echo 0)" \
    "$mounts mounts under $dir${exec_root:+ or $exec_root}${procs:+; left: $procs}"
  local left
  left="$(find "$dir" -mindepth 1 -maxdepth 1 | wc -l)"
  [ -z "$exec_root" ] || [ ! -e "$exec_root" ] || left=$((left + 1))
  check "$1: its work directory removed" "$([ "$left" = 0 ] && echo 1 || echo 0)" "$left entries left"
}

echo "== unit tests of the helpers (tests/local/test_helpers.py)"
unit_status=0
python3 -m unittest discover -s tests/local -p 'test_*.py' >target/local-test/unit.log 2>&1 || unit_status=$?
check "sam_host_network.py refuses other SAM versions; check-doc-commands.py catches unrun commands" \
  "$([ "$unit_status" = 0 ] && echo 1 || echo 0)" "$(tail -n 1 target/local-test/unit.log)"
[ "$unit_status" = 0 ] || sed 's/^/    | /' target/local-test/unit.log

echo "== sam-local-invoke.sh interrupted (Ctrl-C) during an invocation"
# Ctrl-C signals the terminal's foreground process group: the script runs
# in a session of its own here, and the whole group gets SIGINT once SAM
# runs a function's container.
mkdir -p "$TMP_ROOT/sam-interrupted"
out=target/local-test/sam-interrupted.log
# A background job starts with SIGINT ignored, and a shell cannot trap a
# signal ignored at its start: the default disposition is restored first.
S3MM_LOCAL_TMP="$TMP_ROOT/sam-interrupted" setsid python3 -c \
  'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
  bash scripts/sam-local-invoke.sh >"$out" 2>&1 &
pid=$!
# The function's container runs the emulator, visible here as a process.
running=0
python3 tests/local/interrupt_when.py "$pid" aws-lambda-rie 900 && running=1
status=0
wait "$pid" || status=$?
check "interrupted: a function's container was running" "$running"
check "interrupted: exits 130" "$([ "$status" = 130 ] && echo 1 || echo 0)" "exit $status"
nothing_left sam-interrupted

echo "== sam-local-invoke.sh with a wrong event"
cp -r events "$TMP_ROOT/events"
python3 - "$TMP_ROOT/events/mover-sqs.json" <<'EOF'
import json, sys
path = sys.argv[1]
event = json.load(open(path))
event["Records"][0]["body"] = event["Records"][0]["body"][:60]  # cut short: not JSON any more
json.dump(event, open(path, "w"))
EOF
run sam-wrong scripts/sam-local-invoke.sh --events "$TMP_ROOT/events"
check "a wrong event: exits non-zero" "$([ "$status" != 0 ] && echo 1 || echo 0)" "exit $status"
check "a wrong event: names MoverFunction and mover-sqs.json" \
  "$(grep -qE '^FAIL MoverFunction +mover-sqs\.json .*batchItemFailures' "$out" && echo 1 || echo 0)" \
  "$(grep -E '^FAIL' "$out" | head -n 1 | cut -c1-160)"
invocations_ok="$(grep '^ok ' "$out" | grep -vc ' start-lambda ' || true)"
check "a wrong event: the eight other invocations pass" "$([ "$invocations_ok" = 8 ] && echo 1 || echo 0)" "$invocations_ok ok"
nothing_left sam-wrong

echo "== sam-local-invoke.sh"
run sam-good scripts/sam-local-invoke.sh
check "exits 0" "$([ "$status" = 0 ] && echo 1 || echo 0)" "exit $status; log $out"
for fn in 'MoverFunction +mover-s3-put' 'MoverFunction +mover-sqs' 'MoverFunction +mover-eventbridge' \
  'MoverFunction +mover-batch-operations-1.0' 'MoverFunction +mover-batch-operations-2.0' \
  'BatchGeneratorFunction' 'CsvMergerFunction' 'ResultsAggregatorFunction' 'MoverFunction +start-lambda'; do
  check "one ok line: $fn" "$(grep -qE "^ok +$fn" "$out" && echo 1 || echo 0)"
done
nothing_left sam-good

echo "== local-aws.sh with an output tampered with"
run aws-tampered scripts/local-aws.sh --tamper-output
check "a wrong output: exits non-zero" "$([ "$status" != 0 ] && echo 1 || echo 0)" "exit $status"
check "a wrong output: names merged-00001.csv" \
  "$(grep -qE '^FAIL merge: .*merged-00001\.csv' "$out" && echo 1 || echo 0)" \
  "$(grep -E '^FAIL' "$out" | head -n 1 | cut -c1-160)"
nothing_left aws-tampered

echo "== local-aws.sh"
run aws-good scripts/local-aws.sh
check "exits 0" "$([ "$status" = 0 ] && echo 1 || echo 0)" "exit $status; log $out"
check "every check ok" "$([ "$(grep -c '^ok ' "$out")" -ge 4 ] && ! grep -q '^FAIL' "$out" && echo 1 || echo 0)" \
  "$(grep -c '^ok ' "$out") ok"
nothing_left aws-good

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
