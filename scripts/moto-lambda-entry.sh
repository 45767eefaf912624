#!/bin/sh
# Entry point of the Lambda image scripts/local-aws.sh gives moto. moto runs
# `docker run IMAGE HANDLER EVENT_JSON` and takes the last line of the
# container's output as the function's answer, and a non-zero exit as a
# function error. This starts the Runtime Interface Emulator over
# /var/task/bootstrap (on the host network: 127.0.0.1 and ports of its own),
# posts the event, prints the answer as the one line on stdout, and exits 1
# when the answer is an error. Everything else goes to stderr.
# busybox sh (the offline image) or any POSIX sh with wget or curl.
set -u
event="$2"
rie=/var/rapid/aws-lambda-rie

post() {
  if command -v curl >/dev/null 2>&1; then
    curl -sS --fail -X POST --data-binary "$event" "$1"
  else
    wget -q -O - --post-data "$event" "$1"
  fi
}

# Whether something listens on 127.0.0.1:$1 (no nc in busybox's image).
listening() {
  grep -q "^ *[0-9]*: 0100007F:$(printf %04X "$1") 00000000:0000 0A" /proc/net/tcp
}

attempt=0
while [ "$attempt" -lt 20 ]; do
  attempt=$((attempt + 1))
  # A port pair from 20000-59999; if one is taken the emulator exits, and
  # the next attempt draws another.
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000 * 2))
  if listening "$port" || listening "$((port + 1))"; then continue; fi
  "$rie" --log-level error --runtime-interface-emulator-address "127.0.0.1:$port" \
    --runtime-api-address "127.0.0.1:$((port + 1))" /var/task/bootstrap >&2 2>&1 &
  pid=$!
  tries=0
  while kill -0 "$pid" 2>/dev/null && ! listening "$port" && [ "$tries" -lt 500 ]; do
    tries=$((tries + 1))
    sleep 0.02
  done
  if ! listening "$port"; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    continue
  fi
  # One post: the emulator answers 200 with the function's answer (an
  # error included), or 502 with no body when the function process exited.
  if answer="$(post "http://127.0.0.1:$port/2015-03-31/functions/function/invocations")"; then
    status=0
    case "$answer" in *'"errorType"'*) status=1 ;; esac
  else
    answer='{"errorType":"Runtime.ExitError","errorMessage":"Runtime exited with error (its log is above)"}'
    status=1
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  printf '%s\n' "$answer" | tr -d '\n'
  echo
  exit "$status"
done
echo '{"errorType":"Runtime.EmulatorUnavailable","errorMessage":"the Runtime Interface Emulator did not start"}'
exit 1
