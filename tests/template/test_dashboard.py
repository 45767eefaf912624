"""The stack's CloudWatch dashboard shows only what exists.

A dashboard that names a metric nobody emits, or a function the stack does
not have, shows an empty graph and nobody notices. For each shape of the
stack (DeliveryMode direct or sqs, CreateBuckets true or false) the
dashboard's body is rendered as CloudFormation would render it, parsed as
JSON, and every metric is checked:

- namespace s3mm: the name and dimensions are those the mover emits, read
  from its source (crates/mover/src/metrics.rs), and every metric it emits
  is on the dashboard;
- AWS/Lambda, AWS/SQS, AWS/States: a metric name the service publishes,
  with a dimension naming a function, queue or state machine this shape of
  the stack creates (child executions of the Distributed Map: the state
  machine's ARN + "/" + the Map state's Label in the definition).

Run: .venv/bin/python -m unittest discover -s tests/template -v
"""

from __future__ import annotations

import copy
import json
import re
import unittest
from pathlib import Path
from typing import Any

from stack_modes import PSEUDO_PARAMETERS, for_parameters
from test_delivery import SHAPES, _label
from test_template import load_template

ROOT = Path(__file__).resolve().parents[2]
MOVER_METRICS = ROOT / "crates" / "mover" / "src" / "metrics.rs"
DEFINITION = ROOT / "statemachine" / "csv-merge.asl.json"

# Metric names each AWS namespace publishes, from the services' guides
# ("Monitoring ... with CloudWatch" of Lambda, SQS and Step Functions);
# only those the dashboard may use.
AWS_METRICS = {
    "AWS/Lambda": ({"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}, "FunctionName"),
    "AWS/SQS": (
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent", "NumberOfMessagesDeleted"},
        "QueueName",
    ),
    "AWS/States": (
        {
            "ExecutionsStarted",
            "ExecutionsSucceeded",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
            "ExecutionsAborted",
            "ExecutionThrottled",
            "ExecutionTime",
        },
        "StateMachineArn",
    ),
}
# What a dimension value must refer to, by namespace: `${Resource}` or
# `${Resource.Attribute}` of a resource of these types.
DIMENSION_TARGETS = {
    "AWS/Lambda": ({"AWS::Serverless::Function", "AWS::Lambda::Function"}, None),
    "AWS/SQS": ({"AWS::SQS::Queue"}, "QueueName"),
    "AWS/States": ({"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}, None),
}


def emitted_metrics(source: str) -> tuple[str, dict[str, str], set[str]]:
    """(namespace, dimensions, metric names) the mover's EMF code emits."""
    namespace = re.search(r'const NAMESPACE: &str = "([^"]+)";', source)
    if not namespace:
        raise ValueError(f"{MOVER_METRICS}: no NAMESPACE constant")
    dimensions = dict(re.findall(r'\.with_dimension\("([^"]+)",\s*"([^"]+)"\)', source))
    names = set(re.findall(r'metrics::(?:counter|gauge|histogram)!\("([^"]+)"\)', source))
    if not names:
        raise ValueError(f"{MOVER_METRICS}: no metrics::counter!/gauge!/histogram! calls")
    return namespace.group(1), dimensions, names


def map_labels(definition: dict[str, Any]) -> set[str]:
    """Labels of the Distributed Map states, at any depth."""
    labels = set()
    for state in definition.get("States", {}).values():
        if state.get("Type") == "Map":
            if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED" and "Label" in state:
                labels.add(state["Label"])
            labels |= map_labels(state.get("ItemProcessor", {}))
    return labels


def render_body(resolved: dict[str, Any]) -> tuple[str, list[str]]:
    """The dashboard body with Fn::Sub applied: `${X}` of a resource stays as
    `<X>`, and the names it refers to."""
    body = resolved["Resources"]["Dashboard"]["Properties"]["DashboardBody"]

    def sub(node: Any) -> tuple[str, list[str]]:
        if isinstance(node, str):
            return node, []
        (key, value), = node.items()
        if key != "Fn::Sub":
            raise ValueError(f"DashboardBody: {key} is not rendered here")
        text, variables = (value, {}) if isinstance(value, str) else value
        refs: list[str] = []
        for name, replacement in variables.items():
            rendered, inner = sub(replacement)
            text = text.replace("${%s}" % name, rendered)
            refs += inner

        def placeholder(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in PSEUDO_PARAMETERS:
                return name
            refs.append(name)
            return "<%s>" % name

        return re.sub(r"\$\{([^}!][^}]*)\}", placeholder, text), refs

    return sub(body)


def check_dashboard(resolved: dict[str, Any], mover_source: str, definition: dict[str, Any]) -> list[str]:
    namespace, dimensions, names = emitted_metrics(mover_source)
    labels = map_labels(definition)
    resources = resolved["Resources"]
    problems = []
    text, refs = render_body(resolved)
    for ref in refs:
        if ref.split(".")[0] not in resources:
            problems.append(f"the dashboard refers to {ref}, which this stack does not create")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        return problems + [f"the dashboard body is not JSON: {err}"]

    shown: set[str] = set()
    for widget in body.get("widgets", []):
        props = widget.get("properties", {})
        title = props.get("title", "?")
        if widget.get("type") == "metric" and not props.get("metrics"):
            problems.append(f"widget {title!r} shows no metric")
        for metric in props.get("metrics", []):
            fields = [f for f in metric if not isinstance(f, dict)]
            if "." in fields:
                problems.append(f"widget {title!r}: {metric} repeats the line above ('.'); write it out")
                continue
            ns, name, dims = fields[0], fields[1], dict(zip(fields[2::2], fields[3::2]))
            where = f"widget {title!r}: {ns} {name}"
            if ns == namespace:
                shown.add(name)
                if name not in names:
                    problems.append(f"{where}: the mover emits no metric {name} (it emits {sorted(names)})")
                if dims != dimensions:
                    problems.append(f"{where}: dimensions {dims} are not the mover's {dimensions}")
                continue
            if ns not in AWS_METRICS:
                problems.append(f"{where}: namespace {ns} is neither {namespace} nor a service this stack uses")
                continue
            published, dimension = AWS_METRICS[ns]
            if name not in published:
                problems.append(f"{where}: not a metric this dashboard knows {ns} publishes")
            if set(dims) != {dimension}:
                problems.append(f"{where}: dimensions {sorted(dims)}, expected [{dimension}]")
                continue
            value = dims[dimension]
            match = re.fullmatch(r"<([A-Za-z0-9]+)(?:\.([A-Za-z]+))?>(?:/(.+))?", value)
            if not match:
                problems.append(f"{where}: {dimension} {value!r} names no resource of the stack")
                continue
            resource, attribute, label = match.groups()
            types, wanted_attribute = DIMENSION_TARGETS[ns]
            if resource not in resources:
                continue  # reported above
            if resources[resource]["Type"] not in types or attribute != wanted_attribute:
                problems.append(f"{where}: {dimension} {value!r} is not a {sorted(types)}{'.' + wanted_attribute if wanted_attribute else ''}")
            if label is not None and label not in labels:
                problems.append(f"{where}: {label!r} is not the Label of a Distributed Map in {DEFINITION.name} ({sorted(labels)})")
    for name in sorted(names - shown):
        problems.append(f"the mover emits {namespace} {name}, which the dashboard does not show")
    return problems


def _shown(resolved: dict[str, Any]) -> set[tuple[str, str, str]]:
    text, _ = render_body(resolved)
    out = set()
    for widget in json.loads(text)["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            fields = [f for f in metric if not isinstance(f, dict)]
            out.add((fields[0], fields[1], fields[3]))
    return out


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.template = load_template()
        cls.mover_source = MOVER_METRICS.read_text(encoding="utf-8")
        cls.definition = json.loads(DEFINITION.read_text(encoding="utf-8"))

    def resolved(self, shape: dict[str, str]) -> dict[str, Any]:
        return for_parameters(copy.deepcopy(self.template), **shape)

    def test_every_shape(self) -> None:
        for shape in SHAPES:
            with self.subTest(shape=_label(shape)):
                self.assertEqual(check_dashboard(self.resolved(shape), self.mover_source, self.definition), [])

    def test_what_the_issue_asks_to_watch(self) -> None:
        sqs = _shown(self.resolved({"DeliveryMode": "sqs"}))
        direct = _shown(self.resolved({"DeliveryMode": "direct"}))
        wanted = {
            ("AWS/Lambda", "Errors", "<MoverFunction>"),
            ("AWS/Lambda", "Throttles", "<MoverFunction>"),
            ("AWS/Lambda", "Duration", "<MoverFunction>"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "<MoverDeadLetterQueue.QueueName>"),
            ("AWS/States", "ExecutionsStarted", "<CsvMergeStateMachine>"),
            ("AWS/States", "ExecutionsSucceeded", "<CsvMergeStateMachine>"),
            ("AWS/States", "ExecutionsFailed", "<CsvMergeStateMachine>"),
            ("AWS/States", "ExecutionTime", "<CsvMergeStateMachine>/MergeBatches"),
            ("AWS/Lambda", "Duration", "<CsvMergerFunction>"),
        }
        self.assertEqual(wanted - direct, set())
        queue_age = ("AWS/SQS", "ApproximateAgeOfOldestMessage", "<MoverQueue.QueueName>")
        self.assertIn(queue_age, sqs)
        self.assertNotIn(queue_age, direct)

    # A check that cannot fail proves nothing: each mutation must be reported.

    def mutated(self, old: str, new: str, shape: dict[str, str] | None = None) -> list[str]:
        template = copy.deepcopy(self.template)
        body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        self.assertIn(old, body[0])
        body[0] = body[0].replace(old, new, 1)
        return check_dashboard(for_parameters(template, **(shape or {})), self.mover_source, self.definition)

    def assertReported(self, problems: list[str], fragment: str) -> None:
        self.assertTrue(any(fragment in p for p in problems), f"{fragment!r} not in {problems}")

    def test_a_metric_the_mover_does_not_emit(self) -> None:
        self.assertReported(self.mutated('"s3mm", "Moved"', '"s3mm", "Moves"'), "the mover emits no metric Moves")

    def test_an_emitted_metric_left_out(self) -> None:
        self.assertReported(
            self.mutated('["s3mm", "Bytes", "Function", "mover"]', '["s3mm", "Moved", "Function", "mover"]'),
            "the mover emits s3mm Bytes, which the dashboard does not show",
        )

    def test_wrong_dimension(self) -> None:
        self.assertReported(self.mutated('"Skipped", "Function", "mover"', '"Skipped", "Function", "s3mm-mover"'), "are not the mover's")

    def test_a_function_that_does_not_exist(self) -> None:
        self.assertReported(self.mutated('"${CsvMergerFunction}"]', '"${CsvMerger}"]'), "refers to CsvMerger, which")

    def test_a_queue_named_by_arn(self) -> None:
        self.assertReported(
            self.mutated("${MoverDeadLetterQueue.QueueName}", "${MoverDeadLetterQueue.Arn}"), "is not a ['AWS::SQS::Queue'].QueueName"
        )

    def test_a_map_label_that_is_not_in_the_definition(self) -> None:
        self.assertReported(self.mutated("${CsvMergeStateMachine}/MergeBatches", "${CsvMergeStateMachine}/Merge"), "is not the Label")

    def test_the_queue_widget_outside_its_mode(self) -> None:
        template = copy.deepcopy(self.template)
        variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1]
        variables["QueueWidget"] = variables["QueueWidget"]["Fn::If"][1]
        problems = check_dashboard(for_parameters(template, DeliveryMode="direct"), self.mover_source, self.definition)
        self.assertReported(problems, "refers to MoverQueue.QueueName, which this stack does not create")

    def test_a_metric_aws_does_not_publish(self) -> None:
        self.assertReported(self.mutated('"AWS/Lambda", "Throttles"', '"AWS/Lambda", "Throttled"'), "AWS/Lambda Throttled: not a metric")

    def test_broken_json(self) -> None:
        self.assertReported(self.mutated('"widgets": [', '"widgets": [,'), "is not JSON")

    def test_emitted_names_come_from_the_source(self) -> None:
        source = self.mover_source.replace('counter!("Failed")', 'counter!("FailedObjects")')
        problems = check_dashboard(self.resolved({}), source, self.definition)
        self.assertReported(problems, "the mover emits no metric Failed")


if __name__ == "__main__":
    unittest.main()
