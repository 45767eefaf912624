"""What scripts/sam_local_invoke.py and scripts/local_aws.py share: checks
that fail with a message, one `ok`/`FAIL` line per case, a summary that
exits 1 naming every failure, an S3 client for a local endpoint, the
commands a user types run and written down for scripts/check-doc-commands.py,
and a main that dies of Ctrl-C's SIGINT so the calling script's trap
cleans up."""

import json
import os
import signal
import subprocess
import sys

import boto3
from botocore.config import Config


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def expect_fields(answer, expected):
    """The answer's values of the expected keys are the expected ones."""
    got = {key: answer.get(key) for key in expected}
    expect(got == expected, f"answered {json.dumps(got)}, expected {json.dumps(expected)}")


def announce(command, log_dir):
    """Shows a command as a user types it and adds it to LOG_DIR/commands.txt,
    which scripts/check-doc-commands.py compares with the docs."""
    print(f"$ {command}", flush=True)
    with open(os.path.join(log_dir, "commands.txt"), "a", encoding="utf-8") as f:
        f.write(command + "\n")


def shell(command, log_dir, env, timeout):
    """Runs a command as written in the docs (shell variables and all, taken
    from `env`) and returns its standard output; a non-zero exit fails the
    check, quoting the end of its standard error."""
    announce(command, log_dir)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=timeout)
    expect(done.returncode == 0, f"`{command}` exited {done.returncode}: {done.stderr.strip()[-600:]}")
    return done.stdout


def s3_client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def body(s3, bucket, key):
    """The object's bytes, or None when there is no such key."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


class Cases:
    """Runs checks one by one, each printing one line, and remembers the failures."""

    def __init__(self):
        self.failures = []

    def case(self, label, run, name=None):
        """`run()` returns what it saw; `name` is how a failure is listed (default: label)."""
        try:
            said = run()
            print(f"ok   {label} {said}", flush=True)
        except (CheckFailed, OSError, ValueError, KeyError, IndexError, TypeError, subprocess.TimeoutExpired) as err:
            print(f"FAIL {label} {err}", flush=True)
            self.failures.append(f"{name or label.strip().rstrip(':')}: {err}")

    def finish(self, what, success):
        if self.failures:
            print(f"\n{what}: {len(self.failures)} check(s) failed:", file=sys.stderr)
            for failure in self.failures:
                print(f"  {failure}", file=sys.stderr)
            sys.exit(1)
        print(f"{what}: {success}")


def run_main(main):
    try:
        main()
    except KeyboardInterrupt:
        # Die of the SIGINT, as a shell expects of a child on Ctrl-C, so
        # that the calling script's trap runs its cleanup.
        print("interrupted", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
