# Container machinery shared by scripts/sam-local-invoke.sh and
# scripts/local-aws.sh; sourced (after scripts/tools.sh) with the repository
# root as the working directory. Containers run on the host network and talk
# to 127.0.0.1 only: no bridge, no traffic to any other address.
#
#   containers_begin DIR   a Docker to use: the one DOCKER_HOST (or the
#                          default socket) answers on, else a dockerd of our
#                          own under DIR (installing Debian's docker.io if
#                          missing), stopped by its pid in containers_end
#   lambda_base_image      sets LAMBDA_IMAGE: public.ecr.aws/lambda/provided:al2023
#                          when present (or pulled, with S3MM_PULL=1), else
#                          s3mm-lambda-base:offline built from Debian packages
#   containers_end         stops what containers_begin started
#   local_run_begin NAME   the common frame of both scripts: the environment
#                          (no telemetry, no instance metadata, us-east-1),
#                          $WORK (under S3MM_LOCAL_TMP or TMPDIR), `step`
#                          headings, and traps that on exit, failure, Ctrl-C
#                          or SIGTERM stop every pid in LOCAL_PIDS, then
#                          containers_end, then remove $WORK
#   free_port              prints a free TCP port on 127.0.0.1
#
# Own dockerd: its own --data-root, --exec-root, --pidfile and socket under
# DIR, --iptables=false --ip6tables=false --bridge=none (containers get the
# host network or none), overlay2, and --host-gateway-ip=127.0.0.1 so that a
# container's host.docker.internal (moto adds it) is the host's loopback.

OWN_DOCKERD_PID=""
OWN_DOCKER_DIR=""
OWN_DOCKER_EXEC=""

containers_begin() {
  local dir="$1"
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo "docker: using the running daemon (${DOCKER_HOST:-default socket})"
    return
  fi
  if ! command -v dockerd >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "docker: no Docker daemon answers and dockerd is not installed; start Docker (or run as root to install Debian's docker.io)" >&2
      return 1
    fi
    echo "docker: apt-get install docker.io"
    # A machine whose package lists are stale or missing needs an update first.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$dir/apt-docker.log" 2>&1 ||
      { apt-get update -q >>"$dir/apt-docker.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >>"$dir/apt-docker.log" 2>&1; } || {
      tail -n 20 "$dir/apt-docker.log" >&2
      echo "docker: apt-get install docker.io failed (log above)" >&2
      return 1
    }
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "docker: no Docker daemon answers, and starting one needs root" >&2
    return 1
  fi
  OWN_DOCKER_DIR="$dir/docker"
  mkdir -p "$OWN_DOCKER_DIR"
  # The sockets live under the exec root, and a socket's path must fit in
  # 108 bytes (containerd's own end in .../containerd/containerd.sock.ttrpc):
  # a short folder of its own in /tmp, removed with the rest.
  OWN_DOCKER_EXEC="$(mktemp -d /tmp/s3mm-dockerd.XXXXXX)"
  export DOCKER_HOST="unix://$OWN_DOCKER_EXEC/docker.sock"
  dockerd --data-root "$OWN_DOCKER_DIR/data" --exec-root "$OWN_DOCKER_EXEC/exec" \
    --pidfile "$OWN_DOCKER_EXEC/dockerd.pid" -H "$DOCKER_HOST" \
    --iptables=false --ip6tables=false --bridge=none --storage-driver overlay2 \
    --host-gateway-ip=127.0.0.1 >"$OWN_DOCKER_DIR/dockerd.log" 2>&1 &
  OWN_DOCKERD_PID=$!
  local waited=0
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$OWN_DOCKERD_PID" 2>/dev/null; then
      tail -n 20 "$OWN_DOCKER_DIR/dockerd.log" >&2
      echo "docker: dockerd exited at start (log above)" >&2
      wait "$OWN_DOCKERD_PID" 2>/dev/null || true
      OWN_DOCKERD_PID=""
      return 1
    fi
    if [ "$waited" -ge 600 ]; then
      echo "docker: dockerd did not answer within 60 s (log: $OWN_DOCKER_DIR/dockerd.log)" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "docker: started dockerd $(dockerd --version | awk '{print $3}' | tr -d ,) (pid $OWN_DOCKERD_PID, host network only, data under $OWN_DOCKER_DIR, sockets under $OWN_DOCKER_EXEC)"
}

containers_end() {
  if [ -n "$OWN_DOCKERD_PID" ]; then
    # dockerd stops its containers and its containerd on SIGTERM.
    kill -TERM "$OWN_DOCKERD_PID" 2>/dev/null || true
    local waited=0
    while kill -0 "$OWN_DOCKERD_PID" 2>/dev/null; do
      if [ "$waited" -ge 300 ]; then
        echo "docker: dockerd (pid $OWN_DOCKERD_PID) still running after 30 s; killing it" >&2
        kill -KILL "$OWN_DOCKERD_PID" 2>/dev/null || true
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
    OWN_DOCKERD_PID=""
  fi
  # Whatever dockerd left mounted under its roots (all of it, when it died
  # at start) goes before the files do.
  local root
  for root in $OWN_DOCKER_DIR $OWN_DOCKER_EXEC; do
    { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
  done
  [ -z "$OWN_DOCKER_EXEC" ] || rm -rf "$OWN_DOCKER_EXEC"
  OWN_DOCKER_EXEC=""
}

LAMBDA_PUBLIC_IMAGE=public.ecr.aws/lambda/provided:al2023
LAMBDA_OFFLINE_IMAGE=s3mm-lambda-base:offline

lambda_base_image() {
  if docker image inspect "$LAMBDA_PUBLIC_IMAGE" >/dev/null 2>&1; then
    LAMBDA_IMAGE="$LAMBDA_PUBLIC_IMAGE"
  elif [ "${S3MM_PULL:-0}" = 1 ] && docker pull -q "$LAMBDA_PUBLIC_IMAGE"; then
    LAMBDA_IMAGE="$LAMBDA_PUBLIC_IMAGE"
  else
    offline_base_image
    LAMBDA_IMAGE="$LAMBDA_OFFLINE_IMAGE"
  fi
  echo "lambda base image: $LAMBDA_IMAGE"
}

# The offline stand-in for provided.al2023: glibc, libgcc and busybox from
# Debian's packages, the layout and environment the Lambda image has
# (/var/task, /var/runtime, /opt, LAMBDA_TASK_ROOT). The Rust binaries need
# nothing more; SAM adds its Runtime Interface Emulator on top (its build
# runs `mv` and `chmod`, hence busybox).
offline_base_image() {
  docker image inspect "$LAMBDA_OFFLINE_IMAGE" >/dev/null 2>&1 && return
  local work
  work="$(mktemp -d "${TMPDIR:-/tmp}/s3mm-base.XXXXXX")"
  (
    set -e
    cd "$work"
    apt-get download libc6 libgcc-s1 gcc-12-base busybox-static >apt.log 2>&1 || {
      cat apt.log >&2
      echo "lambda base image: apt-get download failed (log above)" >&2
      exit 1
    }
    mkdir root
    for deb in ./*.deb; do dpkg-deb -x "$deb" root; done
    cd root
    for applet in $(./bin/busybox --list); do [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"; done
    mkdir -p tmp var/task var/runtime opt etc
    chmod 1777 tmp
    echo 'root:x:0:0:root:/root:/bin/sh' >etc/passwd
    echo 'root:x:0:' >etc/group
    tar -c . | docker import \
      --change 'WORKDIR /var/task' \
      --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
      --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
      --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
      --change 'ENV TZ=:/etc/localtime' \
      - "$LAMBDA_OFFLINE_IMAGE" >/dev/null
  )
  local status=$?
  rm -rf "$work"
  return "$status"
}

LOCAL_PIDS=()

local_run_begin() {
  export SAM_CLI_TELEMETRY=0
  export AWS_EC2_METADATA_DISABLED=true
  export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
  unset AWS_SESSION_TOKEN AWS_PROFILE
  WORK="$(mktemp -d "${S3MM_LOCAL_TMP:-${TMPDIR:-/tmp}}/$1.XXXXXX")"
  started=$SECONDS
  trap local_run_end EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

step() { printf '\n== %s\n' "$*"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

local_run_end() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in ${LOCAL_PIDS[@]+"${LOCAL_PIDS[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  containers_end
  rm -rf "$WORK"
  exit "$status"
}
