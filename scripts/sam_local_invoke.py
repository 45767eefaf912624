"""Runs `sam local invoke` for the four functions with the events/ files and
judges each by the bytes that land in the local S3 and the JSON the function
returned, never by SAM's exit code (SAM exits 0 when the function fails or
its container never answers).

Called by scripts/sam-local-invoke.sh once Docker, the base image, the SAM
build and local-s3 are up. Seeds exactly the objects the events name:

  mover-*.json          the object each event announces, with the body whose
                        MD5 is the event's eTag
  batch-generator.json  one small CSV per file of the csv-merger event's batch
                        under the event's source prefix
  csv-merger.json       (the manifest the batch-generator wrote)
  results-aggregator.json (the result the csv-merger wrote)

Prints one line per invocation with what it checked; exits 1 naming the
function, the event and what was wrong when any check fails.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import time
import urllib.parse

from local_checks import Cases, CheckFailed, announce, body, expect, expect_fields, run_main, s3_client, shell

# The object the sample events announce: its MD5 is their eTag.
SAMPLE_BODY = "date,city,amount\n2026-11-24,São Paulo,42\n".encode()
# Rows of the CSVs the merge events work on, in key order of their files.
MERGE_FILES = [
    ("pedido 0001 São Paulo.csv", "2026-11-24,São Paulo,42\n"),
    ("pedido 0002 Curitiba+PR.csv", '2026-11-24,"Curitiba, PR",17\n'),
    ("pedido 0003 100%.csv", '2026-11-24,"Rio ""RJ""",7\n'),
]
HEADER = "date,city,amount\n"


class Run(Cases):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.events = args.events
        self.s3 = s3_client(args.endpoint)
        self.log_dir = args.log_dir

    def event(self, name):
        with open(os.path.join(self.events, name), encoding="utf-8") as f:
            return json.load(f)

    def body(self, bucket, key):
        return body(self.s3, bucket, key)

    def exists(self, bucket, key):
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except self.s3.exceptions.ClientError:
            return False

    def ensure_bucket(self, bucket):
        try:
            self.s3.create_bucket(Bucket=bucket)
        except (self.s3.exceptions.BucketAlreadyOwnedByYou, self.s3.exceptions.BucketAlreadyExists):
            pass

    def seed_sample(self, bucket, key):
        """Puts the sample object where an event announces it, clears where
        the mover would archive it, and returns that destination key."""
        dest_key = self.args.dest_prefix + key.removeprefix(self.args.source_prefix)
        self.ensure_bucket(bucket)
        self.ensure_bucket(self.args.dest_bucket)
        self.s3.delete_object(Bucket=self.args.dest_bucket, Key=dest_key)
        self.s3.put_object(Bucket=bucket, Key=key, Body=SAMPLE_BODY)
        return dest_key

    def invoke(self, function, event_path):
        """Runs the command a user types and returns the function's answer
        (the JSON SAM prints on stdout) and the seconds it took."""
        command = [
            *self.args.sam,
            "local",
            "invoke",
            function,
            "--event",
            event_path,
            "--env-vars",
            self.args.env_vars,
            "--parameter-overrides",
            *self.args.parameter_overrides,
            *self.args.sam_args,
        ]
        shown = shlex.join([*shlex.split(self.args.sam_shown), *command[len(self.args.sam) :]])
        announce(shown, self.log_dir)
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        seconds = time.monotonic() - started
        log = os.path.join(self.log_dir, f"{function}-{os.path.basename(event_path)}.log")
        with open(log, "w", encoding="utf-8") as f:
            f.write(f"$ {shown}\nexit status {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
        answer = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        try:
            value = json.loads(answer)
        except json.JSONDecodeError:
            tail = "\n    ".join(done.stderr.strip().splitlines()[-8:])
            raise CheckFailed(f"no JSON answer from the function (SAM exit {done.returncode}; log {log}):\n    {tail}")
        if isinstance(value, dict) and "errorType" in value:
            raise CheckFailed(f"the function failed: {value['errorType']}: {value.get('errorMessage', '')} (log {log})")
        return value, seconds

    def event_case(self, function, event_name, run):
        path = os.path.join(self.events, event_name)
        self.case(f"{function:26} {event_name:24}", lambda: run(path), name=f"{function} ({path})")

    # ---------------------------------------------------------------- mover

    def mover(self, event_name):
        def run(path):
            event = self.event(event_name)
            try:
                bucket, key, etag = announced_object(event)
            except (KeyError, IndexError, TypeError, ValueError) as err:
                # Nothing to seed: the function still gets the event, and
                # its answer says what it made of it.
                answer, _ = self.invoke("MoverFunction", path)
                raise CheckFailed(f"the event names no object ({err!r}); the function answered {json.dumps(answer)}")
            expect(
                etag is None or hashlib.md5(SAMPLE_BODY).hexdigest() == etag,
                f"the event's eTag {etag} is not the MD5 of the sample object",
            )
            dest_key = self.seed_sample(bucket, key)
            answer, seconds = self.invoke("MoverFunction", path)
            landed = self.body(self.args.dest_bucket, dest_key)
            where = f"s3://{self.args.dest_bucket}/{dest_key}"
            expect(landed is not None, f"nothing at {where}; the function answered {json.dumps(answer)}")
            expect(landed == SAMPLE_BODY, f"{where} holds {landed!r}, not the {len(SAMPLE_BODY)} bytes uploaded")
            expect(not self.exists(bucket, key), f"the source s3://{bucket}/{key} is still there")
            if "Records" in event and event["Records"] and event["Records"][0].get("eventSource") == "aws:sqs":
                expect(answer == {"batchItemFailures": []}, f"answered {json.dumps(answer)}, not no batchItemFailures")
            if "tasks" in event:
                codes = [r.get("resultCode") for r in answer.get("results", [])] if isinstance(answer, dict) else None
                expect(codes == ["Succeeded"], f"answered {json.dumps(answer)}, not one Succeeded result")
            return f"{where}: {len(landed)} bytes as uploaded, source deleted ({seconds:.1f} s)"

        self.event_case("MoverFunction", event_name, run)

    def start_lambda(self, port):
        """`aws lambda invoke --endpoint-url` against `sam local start-lambda`,
        twice with the same S3 event, as a replay from the dead-letter queue
        would: the first moves the object, the second finds it moved."""
        event_name = "mover-s3-put.json"
        bucket, key, _ = announced_object(self.event(event_name))
        answer_file = os.path.join(self.log_dir, "lambda-invoke.json")
        command = (
            'aws lambda invoke --endpoint-url "http://127.0.0.1:$LAMBDA_PORT" --function-name MoverFunction '
            f"--payload file://{os.path.join(self.events, event_name)} {answer_file}"
        )

        def invoke():
            out = shell(command, self.log_dir, {**os.environ, "LAMBDA_PORT": str(port)}, timeout=300)
            status = json.loads(out)
            expect(status.get("StatusCode") == 200 and "FunctionError" not in status, f"aws lambda invoke printed {out}")
            with open(answer_file, encoding="utf-8") as f:
                return json.load(f)

        def run():
            dest_key = self.seed_sample(bucket, key)
            where = f"s3://{self.args.dest_bucket}/{dest_key}"
            first = invoke()
            expect(first.get("moved") == 1, f"the first invocation answered {json.dumps(first)}, not moved: 1")
            expect(self.body(self.args.dest_bucket, dest_key) == SAMPLE_BODY, f"{where} does not hold the sample bytes")
            expect(not self.exists(bucket, key), f"the source s3://{bucket}/{key} is still there")
            again = invoke()
            expect(again.get("already_moved") == 1, f"the replay answered {json.dumps(again)}, not already_moved: 1")
            expect(self.body(self.args.dest_bucket, dest_key) == SAMPLE_BODY, f"{where} changed on the replay")
            return f"{where}: moved, then the replay found it moved ({json.dumps(again)})"

        self.case(f"{'MoverFunction':26} {'start-lambda':24}", run, name="MoverFunction (sam local start-lambda)")

    # ---------------------------------------------------------------- merge

    def merge_keys(self, gen, task):
        count = task["batch"]["file_count"]
        expect(count == len(MERGE_FILES), f"the csv-merger event's file_count is {count}, the seed has {len(MERGE_FILES)}")
        return [gen["source_prefix"] + "2026-11-24/" + name for name, _ in MERGE_FILES]

    def batch_generator(self):
        def run(path):
            gen = self.event("batch-generator.json")
            task = self.event("csv-merger.json")
            keys = self.merge_keys(gen, task)
            self.ensure_bucket(gen["source_bucket"])
            self.ensure_bucket(gen["dest_bucket"])
            for key, (_, row) in zip(keys, MERGE_FILES):
                self.s3.put_object(Bucket=gen["source_bucket"], Key=key, Body=(HEADER + row).encode())
            answer, seconds = self.invoke("BatchGeneratorFunction", path)
            run_prefix = f"{gen['dest_prefix']}{gen['execution_name']}/"
            expected = {
                "run_id": gen["execution_name"],
                "run_prefix": run_prefix,
                "total_files": len(keys),
                "total_batches": 1,
                "batches_key": f"{run_prefix}_manifests/batches.json",
            }
            expect_fields(answer, expected)
            batches = self.body(gen["dest_bucket"], expected["batches_key"])
            expect(batches is not None, f"no s3://{gen['dest_bucket']}/{expected['batches_key']}")
            items = json.loads(batches)
            expect(items == [task["batch"]], f"batches.json holds {batches.decode()}, not the csv-merger event's batch")
            manifest = self.body(gen["dest_bucket"], task["batch"]["manifest_key"])
            expect(manifest is not None, f"no manifest s3://{gen['dest_bucket']}/{task['batch']['manifest_key']}")
            listed = json.loads(manifest)["keys"]
            expect(listed == keys, f"the manifest lists {listed}, not {keys}")
            return f"batches.json = the csv-merger event's batch; the manifest lists the {len(keys)} files in key order ({seconds:.1f} s)"

        self.event_case("BatchGeneratorFunction", "batch-generator.json", run)

    def csv_merger(self):
        def run(path):
            task = self.event("csv-merger.json")
            answer, seconds = self.invoke("CsvMergerFunction", path)
            expected_body = (HEADER + "".join(row for _, row in MERGE_FILES)).encode()
            expected = {"batch_id": 0, "output_key": task["batch"]["output_key"], "files": 3, "rows": 3, "skipped": 0}
            expect_fields(answer, expected)
            where = f"s3://{task['dest_bucket']}/{task['batch']['output_key']}"
            merged = self.body(task["dest_bucket"], task["batch"]["output_key"])
            expect(merged == expected_body, f"{where} holds {merged!r}, expected {expected_body!r}")
            return f"{where}: header once + 3 rows in key order, {len(merged)} bytes exact ({seconds:.1f} s)"

        self.event_case("CsvMergerFunction", "csv-merger.json", run)

    def results_aggregator(self):
        def run(path):
            task = self.event("results-aggregator.json")
            merge = self.event("csv-merger.json")
            answer, seconds = self.invoke("ResultsAggregatorFunction", path)
            report_key = f"{task['run_prefix']}report.json"
            expected = {
                "run_id": task["run_id"],
                "report_key": report_key,
                "total_files": 3,
                "merged_files": 3,
                "skipped_files": 0,
                "rows": 3,
                "outputs": 1,
                "failed_batches": 0,
            }
            expect_fields(answer, expected)
            body = self.body(task["dest_bucket"], report_key)
            expect(body is not None, f"no s3://{task['dest_bucket']}/{report_key}")
            report = json.loads(body)
            outputs = [(o["key"], o["files"], o["rows"]) for o in report["outputs"]]
            expect(
                outputs == [(merge["batch"]["output_key"], 3, 3)] and report["failed_batches"] == [],
                f"report.json lists outputs {outputs} and failed batches {report['failed_batches']}",
            )
            return f"s3://{task['dest_bucket']}/{report_key}: 3 files, 3 rows, 1 output, no failed batch ({seconds:.1f} s)"

        self.event_case("ResultsAggregatorFunction", "results-aggregator.json", run)


def announced_object(event):
    """(bucket, key, eTag) of the object a mover sample event announces, the
    key decoded as the mover decodes it."""
    if "tasks" in event:
        # S3 Batch Operations: bucket by name (schema 2.0) or ARN (1.0), the
        # key URL-encoded, no ETag.
        task = event["tasks"][0]
        bucket = task.get("s3Bucket") or task["s3BucketArn"].rsplit(":", 1)[-1]
        return bucket, urllib.parse.unquote_plus(task["s3Key"]), None
    if "detail" in event:
        detail = event["detail"]
        return detail["bucket"]["name"], detail["object"]["key"], detail["object"]["etag"]
    record = event["Records"][0]
    if record.get("eventSource") == "aws:sqs":
        return announced_object(json.loads(record["body"]))
    obj = record["s3"]["object"]
    return record["s3"]["bucket"]["name"], urllib.parse.unquote_plus(obj["key"]), obj["eTag"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="the local S3, as this machine reaches it")
    parser.add_argument("--events", default="events")
    parser.add_argument("--env-vars", help="for sam local invoke")
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--sam", help="the SAM program, as an argument list in one shell-quoted string")
    parser.add_argument("--sam-shown", default="sam", help="how the SAM program is shown in the printed commands")
    parser.add_argument("--source-prefix", default="incoming/")
    parser.add_argument("--dest-bucket", default="s3mm-demo-archive")
    parser.add_argument("--dest-prefix", default="archive/")
    parser.add_argument("--parameter-overrides", nargs="+")
    parser.add_argument(
        "--start-lambda-port", type=int, help="instead of sam local invoke: aws lambda invoke on this sam local start-lambda"
    )
    parser.add_argument("sam_args", nargs=argparse.REMAINDER, help="after --: more sam local invoke arguments")
    args = parser.parse_args()
    args.sam = shlex.split(args.sam or "")
    args.sam_args = [a for a in args.sam_args if a != "--"]

    run = Run(args)
    if args.start_lambda_port:
        run.start_lambda(args.start_lambda_port)
        run.finish("sam local start-lambda", "aws lambda invoke moved the object, and a replay found it moved")
        return
    for name in (
        "mover-s3-put.json",
        "mover-sqs.json",
        "mover-sqs-eventbridge.json",
        "mover-eventbridge.json",
        "mover-batch-operations-1.0.json",
        "mover-batch-operations-2.0.json",
    ):
        run.mover(name)
    run.batch_generator()
    run.csv_merger()
    run.results_aggregator()
    run.finish("sam local invoke", "all four functions did what their events ask")


if __name__ == "__main__":
    run_main(main)
