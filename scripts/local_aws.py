"""The merge through `aws stepfunctions start-execution`, and the move on
upload, against moto's server as a local AWS. Called by scripts/local-aws.sh
once moto runs (AWS_ENDPOINT_URL names it) and .aws-sam/build holds the
release binaries.

What it builds in moto, from the project's own files:
  - the three merge functions and the mover, from .aws-sam/build/*/bootstrap,
    with the runtime, handler, memory, timeout and environment the template
    gives them (parameters at their defaults, the buckets named below);
  - the state machine, statemachine/csv-merge.asl.json with the template's
    DefinitionSubstitutions filled with those functions' ARNs and only these
    edits, which moto's ASL grammar forces (MOTO_EDITS);
  - the buckets, the source bucket's notification to the mover.

Then it runs the AWS CLI commands a user types (docs/deploy.md), exactly as
written there, and judges each run by the bytes that land in S3.
"""

import argparse
import io
import json
import os
import shlex
import sys
import time
import urllib.request
import zipfile

import boto3
import yaml

from local_checks import Cases, CheckFailed, body, expect, run_main, s3_client, shell

SOURCE_BUCKET = "s3mm-demo-source"
DEST_BUCKET = "s3mm-demo-archive"
ROLE_NAME = "s3mm-local"
STATE_MACHINE = "s3mm-csv-merge"
# Where the moto edit below points the Map's ResultWriter.
MOTO_MAP_RESULTS = "moto-map-results"
HEADER = "date,city,amount\n"

# The edits moto 5.2.5's ASL grammar forces on the definition, each
# (path, value in the definition, value moto takes, why).
MOTO_EDITS = [
    (
        "States.MergeBatches.ToleratedFailurePercentage",
        100,
        100.0,
        "moto's grammar reads ToleratedFailurePercentage only as a decimal number",
    ),
    (
        "States.MergeBatches.ItemProcessor.ProcessorConfig.ExecutionType",
        "EXPRESS",
        "STANDARD",
        "moto's grammar accepts only STANDARD child executions (it runs the children as threads either way)",
    ),
    (
        "States.MergeBatches.ResultWriter.Parameters",
        {"Bucket.$": "$.dest_bucket", "Prefix.$": "$.map_results_prefix"},
        {"Bucket": DEST_BUCKET, "Prefix": MOTO_MAP_RESULTS},
        "moto evaluates the ResultWriter's paths on the Map's results, not on its input as AWS does, so fixed values stand in",
    ),
]


# ------------------------------------------------------------------ template


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...)."""


def _cfn_tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


class Template:
    def __init__(self, path, parameters):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.load(f, Loader=CfnLoader)
        self.parameters = {name: str(p.get("Default", "")) for name, p in self.doc["Parameters"].items()}
        self.parameters.update(parameters)

    def resolve(self, value, where):
        """Parameter references and literals; anything else is named, not guessed."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            if name not in self.parameters:
                raise CheckFailed(f"{where}: !Ref {name} is not a parameter")
            return self.parameters[name]
        if isinstance(value, (dict, list)):
            raise CheckFailed(f"{where}: {json.dumps(value)} is not resolved by scripts/local_aws.py")
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    def resolve_deep(self, value, conditions, where):
        """`resolve` through lists, maps and Fn::If, the conditions given."""
        if isinstance(value, dict) and set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            if name not in conditions:
                raise CheckFailed(f"{where}: condition {name} is not evaluated by scripts/local_aws.py")
            return self.resolve_deep(when_true if conditions[name] else when_false, conditions, where)
        if isinstance(value, dict) and set(value) != {"Ref"}:
            return {k: self.resolve_deep(v, conditions, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve_deep(v, conditions, where) for v in value]
        return self.resolve(value, where)

    def properties(self, logical):
        return self.doc["Resources"][logical]["Properties"]

    def function(self, logical):
        resource = self.doc["Resources"][logical]
        props = resource["Properties"]
        globals_ = self.doc.get("Globals", {}).get("Function", {})
        env = {}
        for source in (globals_, props):
            for name, value in source.get("Environment", {}).get("Variables", {}).items():
                env[name] = self.resolve(value, f"{logical} Environment {name}")
        return {
            "binary": resource["Metadata"]["BuildProperties"]["Binary"],
            "runtime": props.get("Runtime", globals_.get("Runtime")),
            "handler": props.get("Handler", globals_.get("Handler")),
            "memory": int(self.resolve(props["MemorySize"], f"{logical} MemorySize")),
            "timeout": int(self.resolve(props["Timeout"], f"{logical} Timeout")),
            "env": env,
        }

    def state_machine(self):
        [(logical, machine)] = [
            (k, r) for k, r in self.doc["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"
        ]
        props = machine["Properties"]
        substitutions = {}
        for name, value in props["DefinitionSubstitutions"].items():
            target = value.get("Fn::GetAtt") if isinstance(value, dict) else None
            if not target or target[1] != "Arn":
                raise CheckFailed(f"{logical} DefinitionSubstitutions.{name}: {value} is not !GetAtt FUNCTION.Arn")
            substitutions[name] = target[0]
        return props["DefinitionUri"], substitutions


# ------------------------------------------------------------------ the run


class LocalAws(Cases):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.endpoint = args.endpoint
        session = boto3.session.Session(region_name="us-east-1")
        self.s3 = s3_client(self.endpoint)
        self.lambda_ = session.client("lambda", endpoint_url=self.endpoint)
        self.iam = session.client("iam", endpoint_url=self.endpoint)
        self.sfn = session.client("stepfunctions", endpoint_url=self.endpoint)
        self.template = Template(
            "template.yaml", {"SourceBucketName": SOURCE_BUCKET, "DestBucketName": DEST_BUCKET, "Architecture": "x86_64"}
        )
        self.env = dict(os.environ)
        self.functions = {}

    # -- setup

    def setup(self):
        # Execution is off in moto unless asked for, before any state machine exists.
        self.post_json("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        role = self.iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        for bucket in (SOURCE_BUCKET, DEST_BUCKET):
            self.s3.create_bucket(Bucket=bucket)
        for logical in ("MoverFunction", "BatchGeneratorFunction", "CsvMergerFunction", "ResultsAggregatorFunction"):
            self.create_function(logical, role)
        uri, substitutions = self.template.state_machine()
        with open(uri, encoding="utf-8") as f:
            text = f.read()
        for name, logical in substitutions.items():
            text = text.replace("${" + name + "}", self.functions[logical])
        definition = json.loads(text)
        for path, expected, value, why in MOTO_EDITS:
            *parents, leaf = path.split(".")
            node = definition
            for part in parents:
                node = node[part]
            expect(node.get(leaf) == expected, f"{uri}: {path} is {node.get(leaf)!r}, the moto edit expects {expected!r}")
            node[leaf] = value
            print(f"   moto edit: {path} {expected!r} -> {value!r} ({why})")
        arn = self.sfn.create_state_machine(name=STATE_MACHINE, definition=json.dumps(definition), roleArn=role)[
            "stateMachineArn"
        ]
        self.env["ARN"] = arn
        print(f"   state machine {arn} from {uri}, {len(substitutions)} substitutions")

    def create_function(self, logical, role):
        spec = self.template.function(logical)
        path = f".aws-sam/build/{logical}/bootstrap"
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read())
        env = dict(spec["env"])
        # The functions run on the host network; moto listens on 127.0.0.1.
        env["AWS_ENDPOINT_URL_S3"] = self.endpoint
        arn = self.lambda_.create_function(
            FunctionName=f"s3mm-{spec['binary']}",
            Runtime=spec["runtime"],
            Role=role,
            Handler=spec["handler"],
            Code={"ZipFile": archive.getvalue()},
            MemorySize=spec["memory"],
            Timeout=spec["timeout"],
            Environment={"Variables": env},
            Architectures=["x86_64"],
        )["FunctionArn"]
        self.functions[logical] = arn
        print(f"   function {arn}: {path}, {spec['runtime']}, {spec['memory']} MB, {spec['timeout']} s")

    def post_json(self, path, body):
        request = urllib.request.Request(
            self.endpoint + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            expect(200 <= response.status < 300, f"POST {path}: HTTP {response.status}")

    # -- the user's commands

    def aws(self, command, **env):
        """Runs an AWS CLI command as written in the docs and returns its JSON output."""
        out = shell(command, self.args.log_dir, {**self.env, **env}, timeout=120)
        return json.loads(out) if out.strip() else None

    def wait(self, execution_arn, limit_s=600):
        """The docs' describe-execution once, then the same call through the
        SDK until the execution is no longer RUNNING."""
        deadline = time.monotonic() + limit_s
        state = self.aws(
            'aws stepfunctions describe-execution --execution-arn "$EXEC" '
            "--query '{status:status,output:output,error:error,cause:cause}'",
            EXEC=execution_arn,
        )
        while state["status"] == "RUNNING":
            expect(time.monotonic() < deadline, f"{execution_arn} still RUNNING after {limit_s} s")
            time.sleep(0.5)
            described = self.sfn.describe_execution(executionArn=execution_arn)
            state = {k: described.get(k) for k in ("status", "output", "error", "cause")}
        return state

    # -- checks

    def body(self, bucket, key):
        return body(self.s3, bucket, key)

    def seed(self, prefix, files):
        """`files` one-row CSVs under `prefix`; returns their (key, row) in key order."""
        cities = ["São Paulo", '"Curitiba, PR"', "Rio de Janeiro", '"Belo ""BH"" Horizonte"', "Recife"]
        entries = []
        for i in range(files):
            key = f"{prefix}2026-11-24/pedido {i:05d} {['a', 'b+c', 'd%e', 'ç'][i % 4]}.csv"
            row = f"2026-11-24,{cities[i % len(cities)]},{i}\n"
            self.s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=(HEADER + row).encode())
            entries.append((key, row))
        entries.sort(key=lambda e: e[0].encode())
        return entries

    def merge(self):
        with open("events/merge-execution-input.json", encoding="utf-8") as f:
            run_input = json.load(f)
        batch_size = run_input["batch_size"]
        files = self.args.files
        entries = self.seed(run_input["source_prefix"], files)
        name = "merge-2026-11-24"
        run_prefix = f"{run_input['dest_prefix']}{name}/"

        def run():
            started = time.monotonic()
            out = self.aws(
                'aws stepfunctions start-execution --state-machine-arn "$ARN" --name merge-2026-11-24 \\\n'
                "  --input file://events/merge-execution-input.json"
            )
            self.env["EXEC"] = out["executionArn"]
            state = self.wait(out["executionArn"])
            seconds = time.monotonic() - started
            expect(
                state["status"] == "SUCCEEDED",
                f"the execution ended {state['status']}: {state.get('error')}: {str(state.get('cause'))[:400]}",
            )
            batches = [entries[i : i + batch_size] for i in range(0, len(entries), batch_size)]
            if self.args.tamper_output:
                key = f"{run_prefix}merged-00001.csv"
                lines = self.body(DEST_BUCKET, key).splitlines(keepends=True)
                self.s3.put_object(Bucket=DEST_BUCKET, Key=key, Body=b"".join(lines[:-1]))
                print(f"   --tamper-output: dropped the last row of s3://{DEST_BUCKET}/{key}")
            report_summary = json.loads(state["output"])
            expected = {
                "run_id": name,
                "report_key": f"{run_prefix}report.json",
                "total_files": files,
                "merged_files": files,
                "skipped_files": 0,
                "rows": files,
                "outputs": len(batches),
                "failed_batches": 0,
            }
            expect(report_summary == expected, f"the execution output {report_summary} is not {expected}")
            for i, batch in enumerate(batches):
                key = f"{run_prefix}merged-{i:05d}.csv"
                want = (HEADER + "".join(row for _, row in batch)).encode()
                got = self.body(DEST_BUCKET, key)
                expect(got is not None, f"no s3://{DEST_BUCKET}/{key}")
                expect(got == want, f"s3://{DEST_BUCKET}/{key}: {len(got)} bytes differ from the {len(want)} expected")
            report = json.loads(self.body(DEST_BUCKET, f"{run_prefix}report.json"))
            outputs = [(o["key"], o["files"], o["rows"]) for o in report["outputs"]]
            want_outputs = [(f"{run_prefix}merged-{i:05d}.csv", len(b), len(b)) for i, b in enumerate(batches)]
            expect(outputs == want_outputs, f"report.json outputs {outputs} are not {want_outputs}")
            expect(report["failed_batches"] == [], f"report.json failed_batches {report['failed_batches']}")
            return (
                f"SUCCEEDED in {seconds:.1f} s; {files} files -> {len(batches)} outputs, each byte-exact "
                f"(header once, rows in key order); report.json totals and outputs right"
            )

        self.case("merge: aws stepfunctions start-execution (events/merge-execution-input.json):", run)

        def watch():
            runs = self.aws('aws stepfunctions list-map-runs --execution-arn "$EXEC"')
            expect(len(runs["mapRuns"]) == 1, f"list-map-runs lists {len(runs['mapRuns'])} map runs")
            self.env["MAP_RUN_ARN"] = runs["mapRuns"][0]["mapRunArn"]
            run = self.aws(
                'aws stepfunctions describe-map-run --map-run-arn "$MAP_RUN_ARN" '
                "--query '{status:status,items:itemCounts,children:executionCounts}'"
            )
            expected = -(-files // batch_size)
            expect(
                run["status"] == "SUCCEEDED" and run["items"]["succeeded"] == expected,
                f"describe-map-run: {json.dumps(run)}; expected SUCCEEDED with {expected} items succeeded",
            )
            # The Map's ResultWriter: moto writes the export's manifest.json
            # (not the result files) under {Prefix}/{map run id}/.
            map_run_id = self.env["MAP_RUN_ARN"].rsplit(":", 1)[-1]
            key = f"{MOTO_MAP_RESULTS}/{map_run_id}/manifest.json"
            manifest = self.body(DEST_BUCKET, key)
            expect(manifest is not None, f"no ResultWriter export s3://{DEST_BUCKET}/{key}")
            expect(
                json.loads(manifest).get("MapRunArn") == self.env["MAP_RUN_ARN"],
                f"s3://{DEST_BUCKET}/{key} names another map run: {manifest[:300]!r}",
            )
            return f"one map run, SUCCEEDED, {expected} items succeeded; its results exported to s3://{DEST_BUCKET}/{key}"

        self.case("merge: the map run (list-map-runs, describe-map-run):", watch)

    def failed_batch(self):
        """A csv-merger that cannot start (a bad FETCH_CONCURRENCY, as a
        broken deploy would give it) fails every batch; the aggregator still
        writes the report, which names them, and the execution ends
        BatchesFailed."""
        merger = self.functions["CsvMergerFunction"]
        config = self.lambda_.get_function_configuration(FunctionName=merger)
        env = dict(config["Environment"]["Variables"])

        def run():
            self.lambda_.update_function_configuration(
                FunctionName=merger, Environment={"Variables": {**env, "FETCH_CONCURRENCY": "0"}}
            )
            try:
                out = self.aws(
                    'aws stepfunctions start-execution --state-machine-arn "$ARN" --name merge-broken-merger '
                    "--input '{\"source_bucket\":\"s3mm-demo-source\",\"source_prefix\":\"csvs/\","
                    '"dest_bucket":"s3mm-demo-archive","dest_prefix":"merged-csvs/","batch_size":1000,'
                    "\"delete_sources\":true}'"
                )
                state = self.wait(out["executionArn"])
            finally:
                self.lambda_.update_function_configuration(FunctionName=merger, Environment={"Variables": env})
            expect(
                state["status"] == "FAILED" and state["error"] == "BatchesFailed",
                f"the execution ended {state['status']} {state.get('error')}, not FAILED BatchesFailed",
            )
            key = "merged-csvs/merge-broken-merger/report.json"
            expect(key in str(state["cause"]), f"the cause does not name {key}: {state['cause']}")
            report = json.loads(self.body(DEST_BUCKET, key))
            failed = sorted(b["batch_id"] for b in report["failed_batches"])
            expected = list(range(-(-self.args.files // 1000)))
            expect(failed == expected, f"report.json names failed batches {failed}, not {expected}")
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=SOURCE_BUCKET, Prefix="csvs/")
            listed = sum(page["KeyCount"] for page in pages)
            expect(listed == self.args.files, f"{listed} sources left of {self.args.files}: delete_sources ran")
            return f"FAILED BatchesFailed, cause names {key}, which lists batches {failed}; all sources kept"

        self.case("merge: batches that fail -> BatchesFailed, report.json names them:", run)

    def move_on_upload(self):
        """An upload reaching the mover straight from S3 (the stack's route
        with CreateBuckets=true) and through an SQS queue, then an `aws s3 cp`
        upload."""
        mover = self.functions["MoverFunction"]
        spec = self.template.function("MoverFunction")
        source_prefix, dest_prefix = spec["env"]["SOURCE_PREFIX"], spec["env"]["DEST_PREFIX"]
        body = "date,city,amount\n2026-11-24,São Paulo,42\n".encode()
        upload = os.path.join(self.args.log_dir, "upload.csv")
        with open(upload, "wb") as f:
            f.write(body)
        prefix_filter = {"Key": {"FilterRules": [{"Name": "prefix", "Value": source_prefix}]}}

        def uploads_move(route, names):
            for name in names:
                self.aws(f'aws s3 cp {shlex.quote(upload)} "s3://{SOURCE_BUCKET}/{source_prefix}{name}" --quiet')
            # moto delivers inside the PutObject request; the wait is a
            # bound for a slower delivery, not a synchronisation.
            deadline = time.monotonic() + 120
            for name in names:
                key = dest_prefix + name
                while (landed := self.body(DEST_BUCKET, key)) is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                expect(landed == body, f"{route}: s3://{DEST_BUCKET}/{key} holds {landed!r}, not the uploaded bytes")
                gone = self.body(SOURCE_BUCKET, source_prefix + name) is None
                expect(gone, f"{route}: s3://{SOURCE_BUCKET}/{source_prefix}{name} is still there")
            return f"{len(names)} uploads under {source_prefix} moved to {dest_prefix} byte for byte, sources deleted"

        def direct():
            self.s3.put_bucket_notification_configuration(
                Bucket=SOURCE_BUCKET,
                NotificationConfiguration={
                    "LambdaFunctionConfigurations": [
                        {"LambdaFunctionArn": mover, "Events": ["s3:ObjectCreated:*"], "Filter": prefix_filter}
                    ]
                },
            )
            return uploads_move("S3 -> Lambda", ["daily report São Paulo.csv", "a+b 100%.csv"])

        sqs = boto3.session.Session(region_name="us-east-1").client("sqs", endpoint_url=self.endpoint)

        def mover_queue(name):
            """DeliveryMode=sqs as the template sets it up: MoverQueue (its
            visibility timeout, retention and redrive to a dead-letter queue)
            and MoverQueueMapping (batch size, window, partial batch
            responses, maximum concurrency), parameters at their defaults."""
            t = self.template
            dlq_props = t.properties("MoverDeadLetterQueue")
            dlq = sqs.create_queue(
                QueueName=f"{name}-dlq",
                Attributes={"MessageRetentionPeriod": t.resolve(dlq_props["MessageRetentionPeriod"], "MoverDeadLetterQueue")},
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            props = t.properties("MoverQueue")
            redrive = props["RedrivePolicy"]
            expect(
                redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["MoverDeadLetterQueue", "Arn"]},
                f"MoverQueue redrives to {redrive['deadLetterTargetArn']}, not MoverDeadLetterQueue",
            )
            queue = sqs.create_queue(
                QueueName=name,
                Attributes={
                    "VisibilityTimeout": t.resolve(props["VisibilityTimeout"], "MoverQueue VisibilityTimeout"),
                    "MessageRetentionPeriod": t.resolve(props["MessageRetentionPeriod"], "MoverQueue MessageRetentionPeriod"),
                    "RedrivePolicy": json.dumps(
                        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(t.resolve(redrive["maxReceiveCount"], "maxReceiveCount"))}
                    ),
                },
            )["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            mapping = t.properties("MoverQueueMapping")
            number = lambda field: int(t.resolve(mapping[field], f"MoverQueueMapping {field}"))  # noqa: E731
            self.lambda_.create_event_source_mapping(
                EventSourceArn=queue_arn,
                FunctionName=mover,
                BatchSize=number("BatchSize"),
                MaximumBatchingWindowInSeconds=number("MaximumBatchingWindowInSeconds"),
                FunctionResponseTypes=mapping["FunctionResponseTypes"],
                ScalingConfig={
                    "MaximumConcurrency": int(t.resolve(mapping["ScalingConfig"]["MaximumConcurrency"], "MaximumConcurrency"))
                },
            )
            return queue, queue_arn, dlq

        def drained(route, queue, dlq):
            for url, what in ((queue, "the queue"), (dlq, "the dead-letter queue")):
                left = sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
                )["Attributes"]
                waiting = int(left["ApproximateNumberOfMessages"]) + int(left["ApproximateNumberOfMessagesNotVisible"])
                expect(waiting == 0, f"{route}: {waiting} messages left in {what}")
            return ", queue and dead-letter queue empty"

        def through_sqs():
            queue, queue_arn, dlq = mover_queue("s3mm-mover-queue")
            self.s3.put_bucket_notification_configuration(
                Bucket=SOURCE_BUCKET,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"], "Filter": prefix_filter}
                    ]
                },
            )
            route = "S3 -> SQS -> Lambda"
            said = uploads_move(route, ["sqs/relatório 2026.csv", "sqs/x y.csv"])
            return said + drained(route, queue, dlq)

        def eventbridge_through_sqs():
            """CreateBuckets=false, DeliveryMode=sqs: the bucket sends its
            events to EventBridge, MoverObjectCreatedRule (its event pattern
            from the template) puts them in the queue."""
            queue, queue_arn, dlq = mover_queue("s3mm-mover-queue-eb")
            events = boto3.session.Session(region_name="us-east-1").client("events", endpoint_url=self.endpoint)
            rule = self.template.properties("MoverObjectCreatedRule")
            pattern = self.template.resolve_deep(
                rule["EventPattern"], {"HasSourcePrefix": source_prefix != ""}, "MoverObjectCreatedRule EventPattern"
            )
            events.put_rule(Name="s3mm-object-created", EventPattern=json.dumps(pattern), State="ENABLED")
            events.put_targets(Rule="s3mm-object-created", Targets=[{"Id": "mover", "Arn": queue_arn}])
            self.s3.put_bucket_notification_configuration(
                Bucket=SOURCE_BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
            route = "S3 -> EventBridge -> SQS -> Lambda"
            said = uploads_move(route, ["eb/pão de queijo.csv", "eb/a+b=c.csv"])
            return said + drained(route, queue, dlq)

        self.case("move on upload: S3 notification -> mover (aws s3 cp):", direct)
        self.case("move on upload: S3 -> SQS -> mover, DeliveryMode=sqs settings (aws s3 cp):", through_sqs)
        self.case("move on upload: S3 -> EventBridge rule -> SQS -> mover (aws s3 cp):", eventbridge_through_sqs)
        # S3 -> EventBridge rule -> mover (DeliveryMode=direct,
        # CreateBuckets=false) is not shown: moto 5.2.5 delivers rule matches
        # to log groups, SQS, event buses and API destinations, never to a
        # Lambda function.


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--files", type=int, default=2100, help="CSV files to merge (batch_size is the input's)")
    parser.add_argument("--tamper-output", action="store_true", help="drop a row of merged-00001.csv before the check")
    args = parser.parse_args()
    run = LocalAws(args)
    try:
        run.setup()
    except (CheckFailed, OSError, KeyError, ValueError) as err:
        sys.exit(f"local-aws: setting up moto failed: {err}")
    run.merge()
    run.failed_batch()
    run.move_on_upload()
    run.finish("local-aws", "every check passed")


if __name__ == "__main__":
    run_main(main)
