"""Prints the processes a run of scripts/sam-local-invoke.sh or
scripts/local-aws.sh would have left: any whose command line names the
run's work directory or its dockerd's exec root (dockerd, containerd and its
shims, local-s3), and any Lambda container process or moto server (they
run on the host, in their own namespaces, and name no directory).
Usage: python3 leftovers.py DIR [DOCKERD_EXEC_ROOT]"""

import os
import sys


def processes(markers):
    """(pid, command line) of every other process whose command line holds one of `markers`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if any(marker in cmdline for marker in markers):
            yield pid, cmdline.replace(b"\0", b" ").decode(errors="replace")


if __name__ == "__main__":
    # dockerd's exec root (and so containerd's sockets) is the run's own
    # /tmp/s3mm-dockerd.* folder, given when the run started a dockerd.
    markers = [arg.encode() for arg in sys.argv[1:3]] + [b"aws-lambda-rie", b"/var/task/bootstrap", b"moto_server"]
    for pid, cmdline in processes(markers):
        print(pid, cmdline[:200])
