"""Sends SIGINT to a process group, as Ctrl-C does, the moment a process
whose command line holds MARKER exists (a Lambda container's emulator is
short-lived, so /proc is read every 10 ms). Exits 0 once it signalled, 1 if
the group ended or TIMEOUT seconds passed first.
Usage: python3 interrupt_when.py PGID MARKER TIMEOUT"""

import os
import signal
import sys
import time

from leftovers import processes

pgid, marker, timeout = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
deadline = time.monotonic() + timeout

while time.monotonic() < deadline:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        sys.exit(1)
    if next(processes([marker]), None):
        os.killpg(pgid, signal.SIGINT)
        sys.exit(0)
    time.sleep(0.01)
sys.exit(1)
