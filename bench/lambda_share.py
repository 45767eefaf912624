"""Each Lambda binary at its memory's CPU share, as Lambda runs it.

Lambda gives a function CPU in proportion to its memory: one vCPU at
1,769 MB, so 7% of a core at 128 MB. This bench runs the four functions'
binaries as `sam build` makes them (`cargo lambda build --release`, whose
release optimizations are one codegen unit, thin LTO, panic=abort and, on
x86_64, target-cpu=haswell; a plain `cargo build --release` spent 1.1-1.5x
the CPU per invocation) under cargo-lambda's runtime emulator
(`cargo lambda watch --only-lambda-apis`), each process in a cgroup (v1 CPU
controller) whose quota is its memory's share, against local-s3 answering
every request after LATENCY ms; local-s3 and the emulator stay outside the
cgroup. For every memory size and latency it records:

  cold start    process start -> first answer (the first invocation)
  warm          the median duration of the following invocations, as the
                invoking client sees it (the emulator's proxying included)
  CPU           CPU time of the function's process (cpuacct, ns) per object
                or file, over the warm invocations
  peak RSS      the process's VmHWM
  cost          warm duration x memory at the price table's GB-second rate,
                plus requests: per 1,000 objects (mover, at SQS batch sizes
                1, 10 and 100), per 1,000-file batch (csv-merger), per
                300,000-file run (the whole merge)
  floor         the same figures for the runtime alone: a handler that
                answers the mover's single-object event without moving
                anything, after two waits of the latency, as long as the
                move's CopyObject and DeleteObject wait on S3
                (crates/mover/examples/runtime_floor.rs): what that
                invocation costs before s3mm's own work

and writes bench/results/lambda-share-<date>.json (date, commit, machine).
Where the cgroup cannot be made (not root, no cgroup v1 CPU controller)
it says so and runs unthrottled, labelled "unthrottled" in the JSON.

Everything it starts (local-s3, the emulator, the functions) is stopped by
pid. Nothing leaves 127.0.0.1.

Usage:
  bash scripts/bench-tools.sh              # boto3 for seeding, into .venv-bench/;
                                           # cargo-lambda and zig, into .venv/
  .venv-bench/bin/python bench/lambda_share.py [--latency-ms 20,0]
      [--memory 128,256,512,1024,1769] [--warm 5]
  python3 bench/charts.py                  # SVG charts under docs/ from the JSON
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
# `cargo lambda build` writes each binary to target/lambda/NAME/bootstrap.
LAMBDA_DIR = ROOT / "target" / "lambda"
FUNCTIONS = ("mover", "csv-merger", "batch-generator", "results-aggregator")
PRICES = json.loads((ROOT / "crates" / "core" / "data" / "aws-prices.json").read_text())
FULL_SHARE_MB = 1769
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_CPUACCT = Path("/sys/fs/cgroup/cpuacct")
ACCESS_KEY, SECRET_KEY = "local-s3-access-key", "local-s3-secret-key"
MERGE_FILES = 10_000  # 10 batches of 1,000: the batch-generator's and aggregator's run
BATCH_FILES = 1_000
MOVER_BATCHES = (1, 10, 100)
# The runtime alone (crates/mover/examples/runtime_floor.rs), built with the binaries.
RUNTIME_FLOOR = LAMBDA_DIR / "runtime-floor" / "bootstrap"
MEMORY_SIZES = [128, 256, 512, 1024, 1769]
RUN_FILES = 300_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Everything started here, stopped by pid on the way out."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> None:
        """Signals `proc` (SIGTERM unless told), waits up to `timeout`
        seconds, then kills it."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc)


class Share:
    """A cgroup holding one function process at `memory_mb`'s CPU share,
    with a cpuacct group beside it to count its CPU in nanoseconds."""

    def __init__(self, name: str, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.cpu = CGROUP_CPU / name
        self.acct = CGROUP_CPUACCT / name
        self.cpu.mkdir()
        self.acct.mkdir()
        (self.cpu / "cpu.cfs_period_us").write_text("100000")
        (self.cpu / "cpu.cfs_quota_us").write_text(str(100000 * memory_mb // FULL_SHARE_MB))

    @staticmethod
    def available() -> str | None:
        """None when shares can be made, else why not."""
        if os.geteuid() != 0:
            return "not root: cgroups cannot be made"
        if not (CGROUP_CPU / "cpu.cfs_quota_us").exists() or not (CGROUP_CPUACCT / "cpuacct.usage").exists():
            return "no cgroup v1 cpu and cpuacct controllers at /sys/fs/cgroup"
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        # The process joins its cgroups before it execs the binary, so its
        # start-up runs at the share too.
        script = 'echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && shift 2 && exec "$@"'
        return ["sh", "-c", script, "sh", str(self.cpu), str(self.acct), *argv]

    def cpu_ns(self) -> int:
        return int((self.acct / "cpuacct.usage").read_text())

    def remove(self) -> None:
        for group in (self.cpu, self.acct):
            try:
                group.rmdir()
            except OSError as err:
                log(f"could not remove {group}: {err}")


class NoShare:
    """Unthrottled, when cgroups cannot be made: CPU from /proc/PID/stat."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.pid: int | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def cpu_ns(self) -> int:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 10_000_000

    def remove(self) -> None:
        pass


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Processes, work: Path) -> None:
        self.args = args
        self.procs = procs
        self.work = work
        self.throttled = Share.available() is None
        self.seq = 0

    # ---------------------------------------------------------------- setup

    def start_s3(self, latency_ms: int) -> str:
        out = self.work / f"s3-{latency_ms}.out"
        root = self.work / f"s3-{latency_ms}"
        self.s3 = self.procs.start(
            [str(RELEASE / "local-s3"), "--root", str(root), "--port", "0", "--latency-ms", str(latency_ms)],
            stdout=out.open("w"),
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in out.read_text().splitlines():
                if line.startswith("endpoint="):
                    return line.split("=", 1)[1]
            time.sleep(0.05)
        raise RuntimeError("local-s3 did not print its endpoint")

    def start_emulator(self) -> int:
        port = free_port()
        self.emulator = self.procs.start(
            ["cargo", "lambda", "watch", "--only-lambda-apis", "--ignore-changes", "-A", "127.0.0.1", "-P", str(port)],
            cwd=ROOT,
            stdout=(self.work / "emulator.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the runtime emulator did not listen")

    def s3_client(self, endpoint: str):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 10}),
        )

    def put_many(self, s3, bucket: str, objects: list[tuple[str, bytes]]) -> None:
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects))

    # ------------------------------------------------------------ functions

    def start_function(self, name: str, share, env: dict[str, str], binary: Path) -> tuple[subprocess.Popen, float]:
        environment = {
            **os.environ,
            **env,
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt/{name}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(share.memory_mb),
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "LOG_FORMAT": "json",
            "RUST_LOG": "warn",
        }
        started = time.monotonic()
        proc = self.procs.start(
            share.wrap([str(binary)]), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if isinstance(share, NoShare):
            share.pid = proc.pid
        return proc, started

    def invoke(self, name: str, payload: dict) -> tuple[dict, float]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/{name}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=900) as response:
            body = response.read()
        seconds = time.monotonic() - started
        answer = json.loads(body) if body else {}
        if isinstance(answer, dict) and "errorType" in answer:
            raise RuntimeError(f"{name} failed: {answer}")
        return answer, seconds

    def measure(self, name: str, memory_mb: int, env: dict[str, str], payloads, binary: Path | None = None) -> dict:
        """Starts `name` (its release binary, or `binary` under that
        function name) at `memory_mb`'s share; `payloads()` yields
        (payload, objects, check) for the cold invocation then each warm one."""
        self.seq += 1
        share = Share(f"s3mm-bench-{os.getpid()}-{self.seq}", memory_mb) if self.throttled else NoShare(memory_mb)
        proc = perf = None
        try:
            proc, started = self.start_function(name, share, env, binary or LAMBDA_DIR / name / "bootstrap")
            warm_ms, cpu_ns, objects = [], 0, 0
            cold_ms = None
            switches = 0
            for index, (payload, count, check) in enumerate(payloads()):
                before = share.cpu_ns() if index > 0 else 0
                switches_before = self.context_switches(proc.pid) if index > 0 else 0
                answer, seconds = self.invoke(name, payload)
                check(answer)
                if index == 0:
                    cold_ms = (time.monotonic() - started) * 1000
                    perf = self.start_perf(name, memory_mb, proc.pid)
                else:
                    cpu_ns += share.cpu_ns() - before
                    switches += self.context_switches(proc.pid) - switches_before
                    warm_ms.append(seconds * 1000)
                    objects += count
            rss_kib = self.peak_rss_kib(proc.pid)
            return {
                "memory_mb": memory_mb,
                "cold_start_ms": round(cold_ms, 1),
                "warm_ms": round(statistics.median(warm_ms), 1),
                "warm_ms_all": [round(ms, 1) for ms in warm_ms],
                "cpu_us_per_object": round(cpu_ns / 1000 / max(objects, 1), 1),
                "peak_rss_mib": round(rss_kib / 1024, 1),
                "context_switches_per_invocation": round(switches / max(len(warm_ms), 1), 1),
            }
        finally:
            if perf is not None:
                # SIGINT makes perf write its data out, which can take a while.
                self.procs.stop(perf, signal.SIGINT, timeout=300)
            # A cgroup can be removed only once its process has exited.
            if proc is not None:
                self.procs.stop(proc)
            share.remove()

    def start_perf(self, name: str, memory_mb: int, pid: int) -> subprocess.Popen | None:
        """`perf record` of the function's process from its first warm
        invocation on (outside its cgroup), when --perf is given."""
        if self.args.perf is None:
            return None
        self.args.perf.mkdir(parents=True, exist_ok=True)
        data = self.args.perf / f"{name}-{memory_mb}mb-{self.latency}ms-{self.seq}.data"
        perf = self.procs.start(
            ["perf", "record", "-q", "-F", "2999", "--call-graph", "dwarf,32768", "-p", str(pid), "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # perf attaches asynchronously; a profile, not a measurement
        return perf

    @staticmethod
    def context_switches(pid: int) -> int:
        """Every time the function's threads left the CPU: each is a wake-up
        to come, and after an idle wait a wake-up runs on cold caches."""
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        return total

    @staticmethod
    def peak_rss_kib(pid: int) -> int:
        # The wrapper shell exec'd the binary: the pid is the function's.
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    # ------------------------------------------------------------- the cases

    def mover_cases(self, s3, memory_mb: int) -> list[dict]:
        out = []
        for batch in MOVER_BATCHES:
            def payloads(batch=batch):
                for _ in range(self.args.warm + 1):
                    self.seq += 1
                    keys = [f"incoming/{self.seq}/obj-{i:04}.bin" for i in range(batch)]
                    self.put_many(s3, "src", [(k, b"x" * 1024) for k in keys])

                    def check(answer):
                        if answer.get("batchItemFailures") != []:
                            raise RuntimeError(f"mover: {answer}")

                    yield sqs_event(keys), batch, check

            env = {"DEST_BUCKET": "dst", "DEST_PREFIX": "archive/", "SOURCE_PREFIX": "incoming/"}
            result = self.measure("mover", memory_mb, env, payloads)
            result["objects_per_invocation"] = batch
            out.append(result)
        return out

    def floor_case(self, memory_mb: int) -> dict:
        """The runtime alone, answering the mover's single-object SQS event
        without moving anything, after waiting as long as that move waits
        on S3 (two requests of the latency each): what a single-object
        invocation costs before the handler's own work."""
        def payloads():
            for _ in range(self.args.warm + 1):
                def check(answer):
                    if answer.get("batchItemFailures") != []:
                        raise RuntimeError(f"runtime-floor: {answer}")

                yield sqs_event(["incoming/x/obj-0000.bin"]), 1, check

        waits = 2 if self.latency > 0 else 0
        env = {"FLOOR_WAITS": str(waits), "FLOOR_WAIT_MS": str(self.latency)}
        result = self.measure("mover", memory_mb, env, payloads, binary=RUNTIME_FLOOR)
        result["waits_ms"] = [self.latency] * waits
        return result

    def merge_cases(self, memory_mb: int) -> dict:
        self.seq += 1
        run_id = f"share-{memory_mb}-{self.seq}"
        generate = {
            "source_bucket": "b-in",
            "source_prefix": "csvs/",
            "dest_bucket": "b-out",
            "dest_prefix": "m/",
            "batch_size": BATCH_FILES,
        }

        def generator_payloads():
            for i in range(self.args.warm + 1):
                def check(answer):
                    if answer.get("total_files") != MERGE_FILES:
                        raise RuntimeError(f"batch-generator: {answer}")

                yield {**generate, "run_id": f"{run_id}-{i}"}, MERGE_FILES, check

        generator = self.measure("batch-generator", memory_mb, {}, generator_payloads)
        run_prefix = f"m/{run_id}-0/"

        def merger_payloads():
            # Every batch of the run, so that the aggregator finds them all.
            for i in range(max(self.args.warm + 1, MERGE_FILES // BATCH_FILES)):
                batch = i % (MERGE_FILES // BATCH_FILES)
                payload = {
                    "run_id": f"{run_id}-0",
                    "source_bucket": "b-in",
                    "dest_bucket": "b-out",
                    "run_prefix": run_prefix,
                    "batch": {
                        "batch_id": batch,
                        "manifest_key": f"{run_prefix}_manifests/batch-{batch:05}.json",
                        "output_key": f"{run_prefix}merged-{batch:05}.csv",
                        "file_count": BATCH_FILES,
                    },
                }

                def check(answer):
                    if answer.get("rows") != BATCH_FILES:
                        raise RuntimeError(f"csv-merger: {answer}")

                yield payload, BATCH_FILES, check

        merger = self.measure("csv-merger", memory_mb, {}, merger_payloads)

        def aggregator_payloads():
            for _ in range(self.args.warm + 1):
                def check(answer):
                    if answer.get("rows") != MERGE_FILES and answer.get("summary", {}).get("rows") != MERGE_FILES:
                        raise RuntimeError(f"results-aggregator: {answer}")

                payload = {"run_id": f"{run_id}-0", "source_bucket": "b-in", "dest_bucket": "b-out", "run_prefix": run_prefix}
                yield payload, MERGE_FILES, check

        aggregator = self.measure("results-aggregator", memory_mb, {}, aggregator_payloads)
        return {"batch-generator": generator, "csv-merger": merger, "results-aggregator": aggregator}

    # ------------------------------------------------------------ the peer

    def s5cmd_cases(self, s3) -> dict:
        """s5cmd's CPU per object on the same server, whole cores (CPU time
        is CPU time): `cp` of the 10,000 CSVs to a local directory (one GET
        each, as the csv-merger does) and `mv` of 1,000 1 KiB objects
        (copy + delete each, as the mover does)."""
        exe = Path(sys.executable).parent / "s5cmd"
        if not exe.exists():
            log(f"s5cmd not found at {exe} (bash scripts/bench-tools.sh installs it): peer skipped")
            return {}
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

        def cpu_of(args: list[str]) -> tuple[float, float]:
            started = time.monotonic()
            proc = subprocess.Popen([str(exe), "--endpoint-url", self.endpoint, *args], env=env, stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"s5cmd {args[0]} exited {proc.returncode}")
            return usage.ru_utime + usage.ru_stime, time.monotonic() - started

        out = {}
        with tempfile.TemporaryDirectory(prefix="s3mm-s5cmd-") as tmp:
            cpu, seconds = cpu_of(["cp", "s3://b-in/csvs/*", tmp + "/"])
            got = sum(len(names) for _, _, names in os.walk(tmp))
            if got != MERGE_FILES:
                raise RuntimeError(f"s5cmd cp fetched {got} files, not {MERGE_FILES}")
            out["cp_get"] = {"objects": got, "seconds": round(seconds, 2), "cpu_us_per_object": round(cpu * 1e6 / got, 1)}
        self.seq += 1
        moved = 1000
        self.put_many(s3, "src", [(f"peer/{self.seq}/obj-{i:04}.bin", b"x" * 1024) for i in range(moved)])
        cpu, seconds = cpu_of(["mv", f"s3://src/peer/{self.seq}/*", f"s3://dst/peer/{self.seq}/"])
        left = s3.list_objects_v2(Bucket="src", Prefix=f"peer/{self.seq}/").get("KeyCount", 0)
        landed = s3.list_objects_v2(Bucket="dst", Prefix=f"peer/{self.seq}/", MaxKeys=1000).get("KeyCount", 0)
        if left != 0 or landed != moved:
            raise RuntimeError(f"s5cmd mv: {landed} of {moved} landed, {left} left in the source")
        out["mv_copy_delete"] = {"objects": moved, "seconds": round(seconds, 2), "cpu_us_per_object": round(cpu * 1e6 / moved, 1)}
        return out

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        results = []
        peers = []
        for latency in self.args.latency_ms:
            self.endpoint = self.start_s3(latency)
            s3 = self.s3_client(self.endpoint)
            for bucket in ("src", "dst", "b-in", "b-out"):
                s3.create_bucket(Bucket=bucket)
            log(f"latency {latency} ms: seeding {MERGE_FILES} CSVs")
            self.put_many(
                s3,
                "b-in",
                [(f"csvs/{i:06}.csv", f"id,name,amount\n{i},name {i},{i}\n".encode()) for i in range(MERGE_FILES)],
            )
            self.latency = latency
            peer = self.s5cmd_cases(s3)
            if peer:
                log(f"   s5cmd: cp {peer['cp_get']['cpu_us_per_object']} us/object, mv {peer['mv_copy_delete']['cpu_us_per_object']} us/object")
                peers.append({"latency_ms": latency, "s5cmd": peer})
            for memory_mb in self.args.memory:
                log(f"latency {latency} ms, {memory_mb} MB ({100 * memory_mb / FULL_SHARE_MB:.1f}% of a core)")
                row = {"latency_ms": latency, "memory_mb": memory_mb}
                if self.args.only != "merge":
                    row["mover"] = self.mover_cases(s3, memory_mb)
                    row["runtime-floor"] = self.floor_case(memory_mb)
                if self.args.only != "mover":
                    row.update(self.merge_cases(memory_mb))
                if self.args.only is None:
                    row["cost"] = costs(row)
                results.append(row)
                log("   " + summary_line(row))
            self.procs.stop(self.s3)
        return {
            "bench": "lambda-share",
            "date": datetime.date.today().isoformat(),
            "commit": commit(),
            "machine": machine(),
            "build": f"cargo lambda build --release ({cargo_lambda_version()}), as sam build: its release optimizations "
            "codegen-units=1, lto=thin, panic=abort, target-cpu=haswell",
            "cpu_share": "cgroup v1 cpu quota, 100,000 us period, MB/1,769 of a core"
            if self.throttled
            else f"unthrottled ({Share.available()})",
            "warm_invocations": self.args.warm,
            "merge_files": MERGE_FILES,
            "batch_files": BATCH_FILES,
            "rows": results,
            "peers": peers,
        }


def sqs_event(keys: list[str]) -> dict:
    """An SQS batch as Lambda delivers it, one message per key, each
    carrying the S3 notification of that key's 1 KiB upload to `src`."""
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "eventSource": "aws:sqs",
                "body": json.dumps(
                    {
                        "Records": [
                            {
                                "eventSource": "aws:s3",
                                "eventName": "ObjectCreated:Put",
                                "s3": {"bucket": {"name": "src"}, "object": {"key": k, "size": 1024}},
                            }
                        ]
                    }
                ),
            }
            for i, k in enumerate(keys)
        ]
    }


def gb_second(memory_mb: float) -> float:
    return memory_mb / 1024 * PRICES["lambda"]["gb_second_arm64"]


def costs(row: dict) -> dict:
    """Dollars at arm64 prices, Lambda only (S3 requests are the same at any memory)."""
    request = PRICES["lambda"]["requests_per_million"] / 1e6
    memory = row["memory_mb"]
    out = {}
    for case in row["mover"]:
        per_invocation = case["warm_ms"] / 1000 * gb_second(memory) + request
        out[f"mover_per_1000_objects_batch_{case['objects_per_invocation']}"] = per_invocation * 1000 / case["objects_per_invocation"]
    merger = row["csv-merger"]["warm_ms"] / 1000 * gb_second(memory) + request
    out["csv_merger_per_1000_file_batch"] = merger
    batches = RUN_FILES / BATCH_FILES
    generator = row["batch-generator"]["warm_ms"] * RUN_FILES / MERGE_FILES / 1000 * gb_second(memory) + request
    aggregator = row["results-aggregator"]["warm_ms"] * RUN_FILES / MERGE_FILES / 1000 * gb_second(memory) + request
    out["merge_per_300k_run_lambda"] = generator + merger * batches + aggregator
    return {k: round(v, 8) for k, v in out.items()}


def summary_line(row: dict) -> str:
    parts = []
    if "mover" in row:
        movers = ", ".join(f"{c['objects_per_invocation']}/inv {c['warm_ms']} ms {c['cpu_us_per_object']} us/obj {c['context_switches_per_invocation']} cs/inv" for c in row["mover"])
        parts.append(f"mover {movers}")
    if "runtime-floor" in row:
        parts.append(f"runtime alone {row['runtime-floor']['warm_ms']} ms {row['runtime-floor']['cpu_us_per_object']} us/inv {row['runtime-floor']['context_switches_per_invocation']} cs/inv")
    if "csv-merger" in row:
        merger = row["csv-merger"]
        parts.append(
            f"csv-merger {merger['warm_ms']} ms/batch {merger['cpu_us_per_object']} us/file "
            f"(cold {merger['cold_start_ms']} ms, {merger['peak_rss_mib']} MiB)"
        )
    return "; ".join(parts)


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def cargo_lambda_version() -> str:
    """`cargo-lambda 1.9.2`: the release optimizations named in the results
    are that version's."""
    out = subprocess.run(["cargo", "lambda", "--version"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return " ".join(out.split()[:2])


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores, {model}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    numbers = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    parser.add_argument("--latency-ms", type=numbers, default=[20, 0])
    parser.add_argument("--memory", type=numbers, default=MEMORY_SIZES)
    parser.add_argument("--warm", type=int, default=5, help="warm invocations per case")
    parser.add_argument("--out", type=Path, help="default: bench/results/lambda-share-<date>.json")
    parser.add_argument("--only", choices=["mover", "merge"], help="run only the mover's or the merge's functions")
    parser.add_argument(
        "--perf",
        type=Path,
        metavar="DIR",
        help="record each function's warm invocations with `perf record` into DIR (with symbols: "
        "CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only in the environment)",
    )
    args = parser.parse_args()
    if shutil.which("cargo") is None:
        sys.exit("cargo is not on PATH")
    why_not = Share.available()
    if why_not:
        log(f"CPU shares cannot be emulated here ({why_not}): running UNTHROTTLED, labelled so in the results")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    # scripts/bench-tools.sh installs the pinned cargo-lambda and zig there.
    venv_bin = ROOT / ".venv" / "bin"
    if (venv_bin / "cargo-lambda").exists():
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which("cargo-lambda") is None:
        sys.exit("cargo-lambda is neither in .venv/bin nor on PATH: bash scripts/bench-tools.sh installs it")
    # The functions as `sam build` makes them, the runtime alone with the
    # same optimizations; local-s3 is the server, not measured.
    functions = [arg for name in FUNCTIONS for arg in ("--bin", name)]
    log("cargo lambda build --release (the four functions, then the runtime alone)")
    subprocess.run(["cargo", "lambda", "build", "--release", "--quiet", *functions], cwd=ROOT, check=True)
    subprocess.run(
        ["cargo", "lambda", "build", "--release", "--quiet", "-p", "mover", "--example", "runtime-floor"], cwd=ROOT, check=True
    )
    log("cargo build --release -p local-s3")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "local-s3"], cwd=ROOT, check=True)
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="s3mm-lambda-share-") as work:
        try:
            bench = Bench(args, procs, Path(work))
            bench.port = bench.start_emulator()
            report = bench.run()
        finally:
            procs.stop_all()
    if args.out is None and (args.only or args.perf or args.memory != MEMORY_SIZES):
        # A partial or profiled run is not the table the README shows.
        log("a partial or profiled run: results printed, not written (give --out to keep them)")
        print(json.dumps(report, indent=1))
        return
    out = args.out or ROOT / "bench" / "results" / f"lambda-share-{report['date']}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    log(f"results: {out}")


if __name__ == "__main__":
    main()
