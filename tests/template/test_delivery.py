"""How object-created events reach the mover, in each of the stack's four
shapes: DeliveryMode direct or sqs, CreateBuckets true (S3 notifies) or
false (an EventBridge rule forwards).

Each shape is template.yaml with its conditions applied (stack_modes.py)
and, for the roles, expanded by the SAM translator. Each check returns a
list of problems: the real template gives [] in every shape, and a mutated
copy shows each check reports what it guards against.

Run: .venv/bin/python -m unittest discover -s tests/template -v
"""

from __future__ import annotations

import copy
import unittest
from typing import Any, Callable

from stack_modes import dangling_references, failed_rules, for_parameters, refers_to
from test_template import identity_statements, load_template, managed_policies

SHAPES = [
    {"DeliveryMode": "direct", "CreateBuckets": "true"},
    {"DeliveryMode": "direct", "CreateBuckets": "false"},
    {"DeliveryMode": "sqs", "CreateBuckets": "true"},
    {"DeliveryMode": "sqs", "CreateBuckets": "false"},
]

QUEUE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
QUEUE_ARN = {"Fn::GetAtt": ["MoverQueue", "Arn"]}
DLQ_ARN = {"Fn::GetAtt": ["MoverDeadLetterQueue", "Arn"]}
RULE_ARN = {"Fn::GetAtt": ["MoverObjectCreatedRule", "Arn"]}
SOURCE_BUCKET_ARN = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucketName}"}
# The Lambda guide: a visibility timeout of at least six times the
# function's timeout; a batching window (at most 300 s) also holds
# messages in flight before the invocation starts.
LONGEST_BATCH_WINDOW = 300


def _of_type(resolved: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resolved["Resources"].items() if r["Type"] == kind}


def _props(resolved: dict[str, Any], name: str) -> dict[str, Any]:
    return resolved["Resources"].get(name, {}).get("Properties", {})


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _queue_grants(resolved: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for st in identity_statements(resolved)
        if st.owner == "MoverFunction" and st.effect == "Allow"
        for action in st.actions
        if action in QUEUE_ACTIONS
        for resource in st.resources
    }


def check_shape(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """The resources each shape must and must not have, and what refers to what."""
    problems = list(dangling_references(resolved))
    sqs = shape["DeliveryMode"] == "sqs"
    from_bucket = shape["CreateBuckets"] == "true"
    resources = resolved["Resources"]
    for name in ("MoverQueue", "MoverQueuePolicy", "MoverQueueMapping", "MoverQueueAgeAlarm"):
        if sqs and name not in resources:
            problems.append(f"{name} is missing with DeliveryMode=sqs")
        if not sqs and name in resources:
            problems.append(f"{name} exists with DeliveryMode=direct")
    permissions = _of_type(resolved, "AWS::Lambda::Permission")
    if sqs and permissions:
        problems.append(f"DeliveryMode=sqs: nothing may invoke the mover but the queue's mapping, yet {sorted(permissions)} allow it")
    if not sqs:
        principal = "s3.amazonaws.com" if from_bucket else "events.amazonaws.com"
        source = SOURCE_BUCKET_ARN if from_bucket else RULE_ARN
        matching = [
            n
            for n, p in permissions.items()
            if p["Properties"].get("Principal") == principal and p["Properties"].get("SourceArn") == source
        ]
        if len(matching) != 1:
            problems.append(f"DeliveryMode=direct: expected one invoke permission for {principal} from {source}, found {matching}")
    return problems


def check_notification(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """The bucket (CreateBuckets=true) or the rule (false) sends to the mover or its queue, and nothing else."""
    sqs = shape["DeliveryMode"] == "sqs"
    problems = []
    if shape["CreateBuckets"] == "true":
        bucket = _props(resolved, "SourceBucket")
        notification = bucket.get("NotificationConfiguration", {})
        lambdas = notification.get("LambdaConfigurations", [])
        queues = notification.get("QueueConfigurations", [])
        wanted, unwanted = (queues, lambdas) if sqs else (lambdas, queues)
        target_key, target = ("Queue", QUEUE_ARN) if sqs else ("Function", {"Fn::GetAtt": ["MoverFunction", "Arn"]})
        if unwanted:
            problems.append(f"SourceBucket also notifies {unwanted}")
        if [(c.get("Event"), c.get(target_key)) for c in wanted] != [("s3:ObjectCreated:*", target)]:
            problems.append(f"SourceBucket should notify {target} of s3:ObjectCreated:*, it has {wanted}")
        # S3 checks the target accepts before it saves the notification.
        must_wait_for = "MoverQueuePolicy" if sqs else "MoverSourceBucketPermission"
        if not refers_to(resolved["Resources"]["SourceBucket"], must_wait_for):
            problems.append(f"SourceBucket is not ordered after {must_wait_for}")
    else:
        targets = _props(resolved, "MoverObjectCreatedRule").get("Targets", [])
        target = QUEUE_ARN if sqs else {"Fn::GetAtt": ["MoverFunction", "Arn"]}
        if [t.get("Arn") for t in targets] != [target]:
            problems.append(f"MoverObjectCreatedRule should target {target}, it targets {[t.get('Arn') for t in targets]}")
        if any(t.get("DeadLetterConfig", {}).get("Arn") != DLQ_ARN for t in targets):
            problems.append("MoverObjectCreatedRule's target has no dead-letter queue")
    return problems


def check_queue(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """DeliveryMode=sqs: encrypted, redriven to the DLQ, visibility from the mover's timeout, policy admitting only the source."""
    if shape["DeliveryMode"] != "sqs":
        return []
    problems = []
    queue = _props(resolved, "MoverQueue")
    dlq = _props(resolved, "MoverDeadLetterQueue")
    if queue.get("SqsManagedSseEnabled") not in (True, "true") and not queue.get("KmsMasterKeyId"):
        problems.append("MoverQueue is not encrypted")
    timeout = _int(_props(resolved, "MoverFunction").get("Timeout"))
    visibility = _int(queue.get("VisibilityTimeout"))
    if timeout is None or visibility is None:
        problems.append(f"MoverQueue VisibilityTimeout {visibility} or the mover's Timeout {timeout} is not a number")
    else:
        if visibility < 6 * timeout:
            problems.append(f"MoverQueue VisibilityTimeout {visibility} < 6 x the mover's Timeout {timeout}")
        if visibility < LONGEST_BATCH_WINDOW + timeout:
            problems.append(f"MoverQueue VisibilityTimeout {visibility} < the longest batching window + the mover's Timeout")
    redrive = queue.get("RedrivePolicy", {})
    if redrive.get("deadLetterTargetArn") != DLQ_ARN:
        problems.append(f"MoverQueue redrives to {redrive.get('deadLetterTargetArn')}, not MoverDeadLetterQueue")
    receives = _int(redrive.get("maxReceiveCount"))
    if receives is None or receives < 5:
        problems.append(f"MoverQueue maxReceiveCount {receives}: the Lambda guide advises at least 5")
    if (_int(dlq.get("MessageRetentionPeriod")) or 345600) <= (_int(queue.get("MessageRetentionPeriod")) or 345600):
        problems.append("MoverDeadLetterQueue must keep messages longer than MoverQueue (they keep their enqueue time)")

    policy = _props(resolved, "MoverQueuePolicy")
    if policy.get("Queues") != [{"Ref": "MoverQueue"}]:
        problems.append(f"MoverQueuePolicy applies to {policy.get('Queues')}")
    statements = policy.get("PolicyDocument", {}).get("Statement", [])
    from_bucket = shape["CreateBuckets"] == "true"
    principal = "s3.amazonaws.com" if from_bucket else "events.amazonaws.com"
    source = SOURCE_BUCKET_ARN if from_bucket else RULE_ARN
    if len(statements) != 1:
        problems.append(f"MoverQueuePolicy should have one statement, it has {len(statements)}")
    for st in statements:
        if st.get("Effect") != "Allow" or st.get("Principal") != {"Service": principal}:
            problems.append(f"MoverQueuePolicy {st.get('Sid')}: admits {st.get('Principal')}, not only {principal}")
        if st.get("Action") not in ("sqs:SendMessage", ["sqs:SendMessage"]):
            problems.append(f"MoverQueuePolicy {st.get('Sid')}: allows {st.get('Action')}, not only sqs:SendMessage")
        if st.get("Resource") != QUEUE_ARN:
            problems.append(f"MoverQueuePolicy {st.get('Sid')}: on {st.get('Resource')}, not the queue")
        if st.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn") != source:
            problems.append(f"MoverQueuePolicy {st.get('Sid')}: not limited to aws:SourceArn {source}")
        if from_bucket and st.get("Condition", {}).get("StringEquals", {}).get("aws:SourceAccount") != {"Ref": "AWS::AccountId"}:
            problems.append(f"MoverQueuePolicy {st.get('Sid')}: a bucket ARN names no account; aws:SourceAccount is missing")
    return problems


def check_mapping(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """DeliveryMode=sqs: the mover reads the queue in batches, answers per message, at bounded concurrency."""
    if shape["DeliveryMode"] != "sqs":
        return []
    mapping = _props(resolved, "MoverQueueMapping")
    expected = {
        "EventSourceArn": QUEUE_ARN,
        "FunctionName": {"Ref": "MoverFunction"},
        "BatchSize": {"Ref": "MoverBatchSize"},
        "MaximumBatchingWindowInSeconds": {"Ref": "MoverBatchWindowSeconds"},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "MoverMaxConcurrency"}},
    }
    problems = [
        f"MoverQueueMapping {key} is {mapping.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if mapping.get(key) != value
    ]
    if mapping.get("Enabled") not in (None, True, "true"):
        problems.append("MoverQueueMapping is disabled")
    return problems


def check_mover_role(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """The mover may read and delete messages of its queue only, and only with DeliveryMode=sqs."""
    granted = _queue_grants(resolved)
    expected = {(a, "${MoverQueue.Arn}") for a in QUEUE_ACTIONS} if shape["DeliveryMode"] == "sqs" else set()
    problems = [f"MoverFunction lacks {a} on {r}" for a, r in sorted(expected - granted)]
    problems += [f"MoverFunction is granted {a} on {r}" for a, r in sorted(granted - expected)]
    extra = managed_policies(resolved).get("MoverFunction", set()) - {
        "service-role/AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess",
    }
    if extra:
        problems.append(f"MoverFunction carries managed policies {sorted(extra)} (SAM's SQS event adds one on '*')")
    return problems


def _alarms_on(resolved: dict[str, Any], namespace: str, metric: str, dimension_value: Any) -> list[str]:
    return [
        name
        for name, alarm in _of_type(resolved, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("Namespace") == namespace
        and alarm["Properties"].get("MetricName") == metric
        and [d.get("Value") for d in alarm["Properties"].get("Dimensions", [])] == [dimension_value]
        and alarm["Properties"].get("AlarmActions") == [{"Ref": "AlarmTopic"}]
    ]


def check_alarms(resolved: dict[str, Any], shape: dict[str, str]) -> list[str]:
    """An alarm on the dead-letter queue always, and on the queue's oldest message with DeliveryMode=sqs."""
    problems = []
    dlq = {"Fn::GetAtt": ["MoverDeadLetterQueue", "QueueName"]}
    if not _alarms_on(resolved, "AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq):
        problems.append("no alarm on the dead-letter queue's visible messages")
    if shape["DeliveryMode"] == "sqs":
        queue = {"Fn::GetAtt": ["MoverQueue", "QueueName"]}
        if not _alarms_on(resolved, "AWS/SQS", "ApproximateAgeOfOldestMessage", queue):
            problems.append("no alarm on the age of MoverQueue's oldest message")
    return problems


CHECKS: list[Callable[[dict[str, Any], dict[str, str]], list[str]]] = [
    check_shape,
    check_notification,
    check_queue,
    check_mapping,
    check_mover_role,
    check_alarms,
]


def _label(shape: dict[str, str]) -> str:
    return f"DeliveryMode={shape['DeliveryMode']} CreateBuckets={shape['CreateBuckets']}"


class EveryShape(unittest.TestCase):
    """template.yaml passes every check in each of the four shapes."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.template = load_template()

    def test_checks_pass(self) -> None:
        for shape in SHAPES:
            resolved = for_parameters(self.template, **shape)
            for check in CHECKS:
                with self.subTest(shape=_label(shape), check=check.__name__):
                    self.assertEqual(check(resolved, shape), [])

    def test_default_is_direct(self) -> None:
        self.assertEqual(self.template["Parameters"]["DeliveryMode"]["Default"], "direct")

    def test_a_batch_over_ten_needs_a_window(self) -> None:
        # Lambda refuses the mapping otherwise; the stack says so before it starts.
        def failed(**params: str) -> list[str]:
            return failed_rules(self.template, SourceBucketName="src", DestBucketName="dst", **params)

        self.assertEqual(failed(DeliveryMode="sqs"), [])
        self.assertEqual(failed(DeliveryMode="sqs", MoverBatchWindowSeconds="0", MoverBatchSize="10"), [])
        broken = failed(DeliveryMode="sqs", MoverBatchWindowSeconds="0", MoverBatchSize="11")
        self.assertEqual(len(broken), 1, broken)
        self.assertIn("MoverBatchSize must be 10 or less", broken[0])
        self.assertEqual(failed(MoverBatchWindowSeconds="0", MoverBatchSize="11"), [])


class MutatedShape(unittest.TestCase):
    """Each check reports what it guards against."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.original = load_template()

    def reports(
        self,
        shape: dict[str, str],
        change: Callable[[dict[str, Any]], None],
        check: Callable[[dict[str, Any], dict[str, str]], list[str]],
        fragment: str,
    ) -> None:
        resolved = for_parameters(copy.deepcopy(self.original), **shape)
        change(resolved)
        problems = check(resolved, shape)
        self.assertTrue(any(fragment in p for p in problems), f"{check.__name__} did not report {fragment!r}: {problems}")

    SQS = {"DeliveryMode": "sqs", "CreateBuckets": "true"}
    SQS_RULE = {"DeliveryMode": "sqs", "CreateBuckets": "false"}
    DIRECT = {"DeliveryMode": "direct", "CreateBuckets": "true"}

    def test_queue_policy_without_source_arn(self) -> None:
        def change(t: dict[str, Any]) -> None:
            del t["Resources"]["MoverQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"]

        self.reports(self.SQS, change, check_queue, "not limited to aws:SourceArn")

    def test_queue_policy_admits_another_service(self) -> None:
        def change(t: dict[str, Any]) -> None:
            t["Resources"]["MoverQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Principal"] = {"AWS": "*"}

        self.reports(self.SQS_RULE, change, check_queue, "not only events.amazonaws.com")

    def test_short_visibility_timeout(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "MoverQueue").update(VisibilityTimeout=60), check_queue, "< 6 x the mover's Timeout")

    def test_no_redrive(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "MoverQueue").pop("RedrivePolicy"), check_queue, "not MoverDeadLetterQueue")

    def test_unencrypted_queue(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "MoverQueue").pop("SqsManagedSseEnabled"), check_queue, "not encrypted")

    def test_no_partial_batch_responses(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "MoverQueueMapping").pop("FunctionResponseTypes"), check_mapping, "FunctionResponseTypes")

    def test_unbounded_concurrency(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "MoverQueueMapping").pop("ScalingConfig"), check_mapping, "ScalingConfig")

    def test_bucket_still_invokes_the_mover(self) -> None:
        def change(t: dict[str, Any]) -> None:
            notification = _props(t, "SourceBucket")["NotificationConfiguration"]
            notification["LambdaConfigurations"] = [{"Event": "s3:ObjectCreated:*", "Function": {"Fn::GetAtt": ["MoverFunction", "Arn"]}}]

        self.reports(self.SQS, change, check_notification, "SourceBucket also notifies")

    def test_bucket_not_ordered_after_the_policy(self) -> None:
        self.reports(self.SQS, lambda t: _props(t, "SourceBucket").pop("Tags"), check_notification, "not ordered after MoverQueuePolicy")

    def test_rule_still_targets_the_mover(self) -> None:
        def change(t: dict[str, Any]) -> None:
            _props(t, "MoverObjectCreatedRule")["Targets"][0]["Arn"] = {"Fn::GetAtt": ["MoverFunction", "Arn"]}

        self.reports(self.SQS_RULE, change, check_notification, "should target")

    def test_queue_left_in_direct_mode(self) -> None:
        def change(t: dict[str, Any]) -> None:
            t["Resources"]["MoverQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}

        self.reports(self.DIRECT, change, check_shape, "MoverQueue exists with DeliveryMode=direct")

    def test_reference_to_a_resource_of_the_other_mode(self) -> None:
        def change(t: dict[str, Any]) -> None:
            t["Outputs"]["Queue"] = {"Value": {"Ref": "MoverQueue"}}

        self.reports(self.DIRECT, change, check_shape, "Outputs.Queue refers to MoverQueue")

    def test_queue_read_granted_on_star(self) -> None:
        def change(t: dict[str, Any]) -> None:
            statements = _props(t, "MoverFunction")["Policies"][0]["Statement"]
            [st] = [s for s in statements if s.get("Sid") == "ReadTheQueue"]
            st["Resource"] = "*"

        self.reports(self.SQS, change, check_mover_role, "is granted sqs:ReceiveMessage on *")

    def test_queue_read_granted_in_direct_mode(self) -> None:
        def change(t: dict[str, Any]) -> None:
            _props(t, "MoverFunction")["Policies"][0]["Statement"].append(
                {"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": {"Fn::GetAtt": ["MoverDeadLetterQueue", "Arn"]}}
            )

        self.reports(self.DIRECT, change, check_mover_role, "is granted sqs:ReceiveMessage")

    def test_sam_sqs_event_instead_of_the_mapping(self) -> None:
        def change(t: dict[str, Any]) -> None:
            _props(t, "MoverFunction")["Events"] = {
                "Queue": {"Type": "SQS", "Properties": {"Queue": QUEUE_ARN, "BatchSize": 10}}
            }

        self.reports(self.SQS, change, check_mover_role, "managed policies")

    def test_no_age_alarm(self) -> None:
        self.reports(self.SQS, lambda t: t["Resources"].pop("MoverQueueAgeAlarm"), check_alarms, "age of MoverQueue's oldest message")


if __name__ == "__main__":
    unittest.main()
