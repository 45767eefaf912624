"""Security checks on template.yaml that checkov cannot make.

checkov scans the SAM template as written, so it never sees the IAM roles SAM
generates from a function's or a state machine's `Policies`. These tests
expand the template with the SAM translator (aws-sam-translator, installed in
.venv with aws-sam-cli; it runs offline) and check every IAM policy the stack
creates, then check the buckets and queues of the template itself.

Each check is a function that returns a list of problems: the real template
must give [], and every check is also run on a mutated copy of the template
to show it reports what it is meant to catch.

Run: .venv/bin/python -m unittest discover -s tests/template -v
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import unittest
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# The SAM translator asks boto3 for a region (nothing is called).
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

from cfnlint.decode import decode  # noqa: E402
from samtranslator.translator.transform import transform as sam_transform  # noqa: E402

logging.getLogger("samtranslator").setLevel(logging.ERROR)

NO_VALUE = {"Ref": "AWS::NoValue"}

# Actions AWS authorizes only on Resource '*' (no resource-level
# permissions); an Allow on '*' may name nothing else.
STAR_ONLY_ACTIONS = {
    # Step Functions execution logging goes through CloudWatch Logs' vended
    # log delivery; these APIs take no log-group ARN, and the Step Functions
    # guide documents them on '*'.
    "logs:CreateLogDelivery": "Step Functions logging: log delivery APIs take no resource ARN",
    "logs:GetLogDelivery": "Step Functions logging: log delivery APIs take no resource ARN",
    "logs:UpdateLogDelivery": "Step Functions logging: log delivery APIs take no resource ARN",
    "logs:DeleteLogDelivery": "Step Functions logging: log delivery APIs take no resource ARN",
    "logs:ListLogDeliveries": "Step Functions logging: log delivery APIs take no resource ARN",
    "logs:PutResourcePolicy": "Step Functions logging: account-level log resource policy",
    "logs:DescribeResourcePolicies": "Step Functions logging: account-level log resource policy",
    "logs:DescribeLogGroups": "Step Functions logging: documented on '*' by the Step Functions guide",
    # X-Ray's write and sampling APIs have no resource-level permissions.
    "xray:PutTraceSegments": "X-Ray: no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray: no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray: no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray: no resource-level permissions",
}

# AWS managed policies a generated role may carry (SAM attaches both).
ALLOWED_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole": "CloudWatch Logs writes of a function (SAM's default)",
    "AWSXrayWriteOnlyAccess": "X-Ray segments; SAM attaches it whenever Tracing is set, even to PassThrough",
}

# S3 actions by the resource they apply to. Any other S3 action fails.
S3_OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectTagging",
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:GetObjectVersion",
}
S3_BUCKET_ACTIONS = {"s3:ListBucket"}

# Rendered S3 ARNs (see render()): a bucket parameter, optionally followed by
# a prefix parameter, then '*'. `${A|B}` is `!If [cond, !Ref A, !Ref B]`.
S3_OBJECT_ARN = re.compile(
    r"^arn:\$\{AWS::Partition\}:s3:::\$\{(?P<bucket>[A-Za-z0-9|]+)\}/(?:\$\{(?P<prefix>[A-Za-z0-9]+)\})?\*$"
)
S3_BUCKET_ARN = re.compile(r"^arn:\$\{AWS::Partition\}:s3:::\$\{(?P<bucket>[A-Za-z0-9|]+)\}$")

SRC = "SourceBucketName"
DST = "DestBucketName"
MERGE_SRC = "MergeSourceBucketName|SourceBucketName"
MERGE_DST = "MergeDestBucketName|DestBucketName"
BACKFILL = "BackfillBucketName|DestBucketName"

S3_ARN = "arn:${AWS::Partition}:s3:::"

# The mover's role, exactly: adding or widening anything fails.
EXPECTED_MOVER_PERMISSIONS = {
    # CopyObject reads the source (and its tags, copied by default);
    # UploadPartCopy reads it; HeadObject of the source before a multipart copy.
    ("s3:GetObject", S3_ARN + "${SourceBucketName}/${SourcePrefix}*"),
    ("s3:GetObjectTagging", S3_ARN + "${SourceBucketName}/${SourcePrefix}*"),
    # DeleteObject with If-Match after a confirmed copy.
    ("s3:DeleteObject", S3_ARN + "${SourceBucketName}/${SourcePrefix}*"),
    # CopyObject / CreateMultipartUpload (with tags) / UploadPartCopy /
    # CompleteMultipartUpload write the destination.
    ("s3:PutObject", S3_ARN + "${DestBucketName}/${DestPrefix}*"),
    ("s3:PutObjectTagging", S3_ARN + "${DestBucketName}/${DestPrefix}*"),
    # HeadObject of the destination: a repeated event finds it there.
    ("s3:GetObject", S3_ARN + "${DestBucketName}/${DestPrefix}*"),
    ("s3:AbortMultipartUpload", S3_ARN + "${DestBucketName}/${DestPrefix}*"),
    # A missing key answers 404, not 403.
    ("s3:ListBucket", S3_ARN + "${SourceBucketName}"),
    ("s3:ListBucket", S3_ARN + "${DestBucketName}"),
    # EventInvokeConfig OnFailure destination (policy generated by SAM).
    ("sqs:SendMessage", "${MoverDeadLetterQueue.Arn}"),
    # DeliveryMode=sqs: the event source mapping reads and deletes messages
    # with the function's role (tests/template/test_delivery.py checks that
    # only that mode grants them).
    ("sqs:ReceiveMessage", "${MoverQueue.Arn}"),
    ("sqs:DeleteMessage", "${MoverQueue.Arn}"),
    ("sqs:GetQueueAttributes", "${MoverQueue.Arn}"),
}
EXPECTED_MOVER_MANAGED_POLICIES = {"service-role/AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"}

# What each role's code does with S3, by bucket (crates/core/src: list.rs,
# fetch.rs, upload.rs, delete.rs, merge/, transfer.rs). ListBucket is
# needed wherever the code tells a missing key (404) from a refusal (403).
NEEDED_S3 = {
    "MoverFunction": {
        ("s3:GetObject", SRC): "CopyObject, UploadPartCopy and HeadObject read the source",
        ("s3:GetObjectTagging", SRC): "GetObjectTagging before a multipart copy; CopyObject copies tags",
        ("s3:DeleteObject", SRC): "DeleteObject with If-Match after the copy",
        ("s3:ListBucket", SRC): "a vanished source is NoSuchKey (SourceGone), not AccessDenied",
        ("s3:PutObject", DST): "CopyObject, CreateMultipartUpload, UploadPartCopy, CompleteMultipartUpload",
        ("s3:PutObjectTagging", DST): "CopyObject of a tagged object; CreateMultipartUpload with Tagging",
        ("s3:GetObject", DST): "HeadObject of the destination (AlreadyMoved)",
        ("s3:AbortMultipartUpload", DST): "AbortMultipartUpload after a failed multipart copy",
        ("s3:ListBucket", DST): "HeadObject of a missing destination is 404, not 403",
    },
    "BatchGeneratorFunction": {
        ("s3:ListBucket", MERGE_SRC): "ListObjectsV2 of source_prefix (list.rs)",
        ("s3:GetObject", MERGE_SRC): "GetObject of the first files to find the header (merge/generate.rs probe_header)",
        ("s3:PutObject", MERGE_DST): "PutObject of the manifests, batches.json and run.json (upload.rs put_bytes)",
    },
    "CsvMergerFunction": {
        ("s3:GetObject", MERGE_SRC): "GetObject of the batch's CSV files (fetch.rs)",
        ("s3:ListBucket", MERGE_SRC): "a file deleted after listing is skipped as NoSuchKey",
        ("s3:GetObject", MERGE_DST): "GetObject of the batch manifest",
        ("s3:ListBucket", MERGE_DST): "a missing manifest is NoSuchKey, not AccessDenied",
        ("s3:PutObject", MERGE_DST): "PutObject or multipart upload of the output and the batch result (upload.rs)",
        ("s3:AbortMultipartUpload", MERGE_DST): "AbortMultipartUpload of a failed output (upload.rs)",
    },
    "ResultsAggregatorFunction": {
        ("s3:GetObject", MERGE_DST): "GetObject of run.json, batches.json, results, manifests and outputs",
        ("s3:ListBucket", MERGE_DST): "a batch without a result is NoSuchKey (reported as failed), not AccessDenied",
        ("s3:PutObject", MERGE_DST): "PutObject of report.json; multipart upload of merged.csv",
        ("s3:AbortMultipartUpload", MERGE_DST): "AbortMultipartUpload of a failed merged.csv",
        ("s3:DeleteObject", MERGE_SRC): "DeleteObjects of the merged sources (delete_sources)",
    },
    "BatchOperationsRole": {
        ("s3:GetObject", BACKFILL): "S3 Batch Operations reads the backfill manifest",
        ("s3:GetObjectVersion", BACKFILL): "a manifest named by version (JobManifestLocation.ObjectVersionId)",
        ("s3:PutObject", BACKFILL): "S3 Batch Operations writes the completion report",
    },
    "CsvMergeStateMachine": {
        ("s3:GetObject", MERGE_DST): "the Distributed Map's ItemReader reads batches.json",
        ("s3:PutObject", MERGE_DST): "the Distributed Map's ResultWriter exports the children's results",
        ("s3:ListMultipartUploadParts", MERGE_DST): "the ResultWriter's export may be a multipart upload",
        ("s3:AbortMultipartUpload", MERGE_DST): "the ResultWriter aborts a failed multipart export",
    },
}

REQUIRED_OWNERS = {
    "MoverFunction",
    "BatchGeneratorFunction",
    "CsvMergerFunction",
    "ResultsAggregatorFunction",
    "CsvMergeStateMachine",
    "MergeScheduleRole",
    "BatchOperationsRole",
}


# --------------------------------------------------------------- loading


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as plain dicts, intrinsic functions kept (Fn::Sub, Ref, ...)."""
    template, matches = decode(str(path))
    if matches or template is None:
        raise ValueError(f"{path} does not parse: {matches}")
    return json.loads(json.dumps(template))


class _NoManagedPolicyLookup:
    """Managed policies must be given by ARN: looking names up would call IAM."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM makes of `template` (roles included)."""
    sam = copy.deepcopy(template)
    for resource in sam.get("Resources", {}).values():
        props = resource.get("Properties", {})
        # Local paths are for `sam build`; the translator wants S3 URIs.
        if resource.get("Type") == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://bucket/code.zip"
        if resource.get("Type") == "AWS::Serverless::StateMachine":
            props["DefinitionUri"] = "s3://bucket/definition.json"
    return sam_transform(sam, {}, _NoManagedPolicyLookup())


# ------------------------------------------------------------- rendering


def branches(node: Any) -> list[Any]:
    """Every value `node` may take: both sides of an Fn::If, nothing for AWS::NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        return branches(when_true) + branches(when_false)
    if node == NO_VALUE:
        return []
    return [node]


def items(node: Any) -> list[Any]:
    """A scalar-or-list policy field as a list, Fn::If expanded at both levels."""
    out = []
    for value in branches(node):
        for item in value if isinstance(value, list) else [value]:
            out.extend(branches(item))
    return out


def render(node: Any) -> str:
    """An ARN or name as text: Ref X and GetAtt X.Y become ${X} and ${X.Y},
    Fn::Sub variables are substituted, and !If [c, !Ref A, !Ref B] becomes ${A|B}."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (key, value), = node.items()
        if key == "Ref":
            return "${%s}" % value
        if key == "Fn::GetAtt":
            return "${%s}" % (value if isinstance(value, str) else ".".join(value))
        if key == "Fn::Sub":
            if isinstance(value, str):
                return value
            text, variables = value
            for name, replacement in variables.items():
                text = text.replace("${%s}" % name, render(replacement))
            return text
        if key == "Fn::Join":
            separator, parts = value
            return separator.join(render(part) for part in parts)
        if key == "Fn::If":
            _, when_true, when_false = value
            sides = [render(when_true), render(when_false)]
            if all(re.fullmatch(r"\$\{[^${}]+\}", side) for side in sides):
                return "${%s}" % "|".join(side[2:-1] for side in sides)
    return json.dumps(node, sort_keys=True)


# ------------------------------------------------------------ statements


class Statement(NamedTuple):
    owner: str  # the function, state machine or role that holds it
    policy: str
    sid: str
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    principal: Any


def _statements(owner: str, policy: str, document: Any) -> list[Statement]:
    out = []
    for document in branches(document):
        for index, st in enumerate(items(document.get("Statement", []))):
            out.append(
                Statement(
                    owner=owner,
                    policy=policy,
                    sid=st.get("Sid", f"#{index}"),
                    effect=st.get("Effect", ""),
                    actions=tuple(render(a) for a in items(st.get("Action", []))),
                    not_actions=tuple(render(a) for a in items(st.get("NotAction", []))),
                    resources=tuple(render(r) for r in items(st.get("Resource", []))),
                    not_resources=tuple(render(r) for r in items(st.get("NotResource", []))),
                    principal=st.get("Principal"),
                )
            )
    return out


def _role_owners(cfn: dict[str, Any]) -> dict[str, str]:
    """Role logical id -> the function or state machine that assumes it."""
    owners = {}
    for name, resource in cfn["Resources"].items():
        props = resource.get("Properties", {})
        role = props.get("Role") if resource["Type"] == "AWS::Lambda::Function" else None
        if resource["Type"] == "AWS::StepFunctions::StateMachine":
            role = props.get("RoleArn")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            target = role["Fn::GetAtt"]
            owners[target if isinstance(target, str) else target[0]] = name
    return owners


def identity_statements(template: dict[str, Any]) -> list[Statement]:
    """Every statement of every IAM policy the stack creates, after the SAM transform."""
    cfn = translate(template)
    owners = _role_owners(cfn)
    out = []
    for name, resource in cfn["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in items(props.get("Policies", [])):
                out += _statements(owners.get(name, name), policy.get("PolicyName", "?"), policy.get("PolicyDocument"))
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = [render(r).strip("${}") for r in items(props.get("Roles", []))] or [name]
            for role in roles:
                out += _statements(owners.get(role, role), name, props.get("PolicyDocument"))
    return out


def managed_policies(template: dict[str, Any]) -> dict[str, set[str]]:
    """Owner -> AWS managed policies attached to its role (name after 'policy/')."""
    cfn = translate(template)
    owners = _role_owners(cfn)
    out: dict[str, set[str]] = {}
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        attached = out.setdefault(owners.get(name, name), set())
        for arn in items(resource.get("Properties", {}).get("ManagedPolicyArns", [])):
            text = render(arn)
            match = re.search(r":iam::aws:policy/(.+)$", text)
            attached.add(match.group(1) if match else text)
    return out


RESOURCE_POLICY_TYPES = {
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
}


def resource_statements(template: dict[str, Any]) -> list[Statement]:
    out = []
    for name, resource in template["Resources"].items():
        field = RESOURCE_POLICY_TYPES.get(resource["Type"])
        if field:
            out += _statements(name, resource["Type"], resource.get("Properties", {}).get(field))
    return out


def _where(st: Statement) -> str:
    return f"{st.owner} ({st.policy} {st.sid})"


# ---------------------------------------------------------------- checks


def check_actions(template: dict[str, Any]) -> list[str]:
    """No wildcard action and no NotAction in any Allow, identity or resource policy."""
    problems = []
    for st in identity_statements(template) + resource_statements(template):
        if st.effect != "Allow":
            continue
        if st.not_actions:
            problems.append(f"{_where(st)}: Allow with NotAction {list(st.not_actions)}")
        for action in st.actions:
            if "*" in action:
                problems.append(f"{_where(st)}: wildcard action {action}")
            elif not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action):
                problems.append(f"{_where(st)}: action {action} is not a plain service:Action")
    return problems


def _placeholders_out(text: str) -> str:
    """`${AWS::Partition}` and the like as one token, so that ':' splits ARN fields."""
    return re.sub(r"\$\{[^}]*\}", "X", text)


def check_resources(template: dict[str, Any]) -> list[str]:
    """Resource '*' only for actions AWS authorizes on '*' alone; no NotResource;
    no wildcard in an ARN's partition, service, region or account."""
    problems = []
    for st in identity_statements(template):
        if st.effect != "Allow":
            continue
        if st.not_resources:
            problems.append(f"{_where(st)}: Allow with NotResource {list(st.not_resources)}")
        if not st.resources:
            problems.append(f"{_where(st)}: Allow without Resource")
        for resource in st.resources:
            if resource == "*":
                for action in st.actions:
                    if action not in STAR_ONLY_ACTIONS:
                        problems.append(f"{_where(st)}: {action} on Resource '*'")
            elif resource.startswith("arn:") and "*" in ":".join(_placeholders_out(resource).split(":")[:5]):
                problems.append(f"{_where(st)}: wildcard in the ARN's partition/service/region/account: {resource}")
    return problems


def check_s3_scope(template: dict[str, Any]) -> list[str]:
    """S3 object actions only on `bucket/prefix*` and bucket actions only on
    `bucket`, the bucket and prefix always template parameters."""
    params = set(template.get("Parameters", {}))
    buckets = {p for p in params if p.endswith("BucketName")}
    prefixes = {p for p in params if p.endswith("Prefix")}
    problems = []
    for st in identity_statements(template):
        if st.effect != "Allow":
            continue
        for action in (a for a in st.actions if a.startswith("s3:")):
            if action in S3_OBJECT_ACTIONS:
                pattern, kind = S3_OBJECT_ARN, "object"
            elif action in S3_BUCKET_ACTIONS:
                pattern, kind = S3_BUCKET_ARN, "bucket"
            else:
                problems.append(f"{_where(st)}: {action} is not an S3 action this stack's code uses")
                continue
            for resource in st.resources:
                match = pattern.match(resource)
                if not match:
                    problems.append(f"{_where(st)}: {action} on {resource}, not an {kind} ARN of a bucket parameter")
                    continue
                unknown = [b for b in match.group("bucket").split("|") if b not in buckets]
                if unknown:
                    problems.append(f"{_where(st)}: {action} on {resource}: {unknown} not a *BucketName parameter")
                prefix = match.groupdict().get("prefix")
                if prefix and prefix not in prefixes:
                    problems.append(f"{_where(st)}: {action} on {resource}: {prefix} is not a *Prefix parameter")
    return problems


def permissions(template: dict[str, Any], owner: str) -> set[tuple[str, str]]:
    """(action, resource) pairs an owner's Allow statements grant."""
    return {
        (action, resource)
        for st in identity_statements(template)
        if st.owner == owner and st.effect == "Allow"
        for action in st.actions
        for resource in st.resources
    }


def check_mover(template: dict[str, Any]) -> list[str]:
    """The mover's role grants exactly EXPECTED_MOVER_PERMISSIONS and its managed policies."""
    granted = permissions(template, "MoverFunction")
    problems = [f"MoverFunction lacks {a} on {r}" for a, r in sorted(EXPECTED_MOVER_PERMISSIONS - granted)]
    problems += [f"MoverFunction is granted {a} on {r}, which is not expected" for a, r in sorted(granted - EXPECTED_MOVER_PERMISSIONS)]
    attached = managed_policies(template).get("MoverFunction", set())
    if attached != EXPECTED_MOVER_MANAGED_POLICIES:
        problems.append(f"MoverFunction managed policies {sorted(attached)} != {sorted(EXPECTED_MOVER_MANAGED_POLICIES)}")
    return problems


def s3_grants(template: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Owner -> (S3 action, bucket) it is granted; bucket as in `${...}` of the ARN."""
    out: dict[str, set[tuple[str, str]]] = {}
    for st in identity_statements(template):
        if st.effect != "Allow":
            continue
        for action in (a for a in st.actions if a.startswith("s3:")):
            for resource in st.resources:
                match = S3_OBJECT_ARN.match(resource) or S3_BUCKET_ARN.match(resource)
                out.setdefault(st.owner, set()).add((action, match.group("bucket") if match else resource))
    return out


def check_s3_needs(template: dict[str, Any]) -> list[str]:
    """Each role has the S3 actions its code calls, and only those ."""
    grants = s3_grants(template)
    problems = []
    for owner in sorted(set(grants) | set(NEEDED_S3)):
        granted = grants.get(owner, set())
        needed = NEEDED_S3.get(owner, {})
        for action, bucket in sorted(set(needed) - granted):
            problems.append(f"{owner}: used but not granted: {action} on {bucket} ({needed[(action, bucket)]})")
        for action, bucket in sorted(granted - set(needed)):
            problems.append(f"{owner}: granted but unused: {action} on {bucket}")
    return problems


def check_managed_policies(template: dict[str, Any]) -> list[str]:
    problems = []
    for owner, attached in sorted(managed_policies(template).items()):
        for policy in sorted(attached - set(ALLOWED_MANAGED_POLICIES)):
            problems.append(f"{owner}: managed policy {policy} is not allowed")
    return problems


def check_resource_policies(template: dict[str, Any]) -> list[str]:
    """No resource policy allows anyone: Principal '*' only in Deny statements."""
    problems = []
    for st in resource_statements(template):
        if st.effect == "Allow" and st.principal in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
            problems.append(f"{_where(st)}: Allow to Principal '*'")
    return problems


def _true(value: Any) -> bool:
    return value is True or value == "true"


def check_buckets(template: dict[str, Any]) -> list[str]:
    """Every bucket: public access fully blocked, SSE by default, and a bucket
    policy denying requests without TLS on the bucket and on its objects."""
    resources = template["Resources"]
    problems = []
    for name, bucket in resources.items():
        if bucket["Type"] != "AWS::S3::Bucket":
            continue
        props = bucket.get("Properties", {})
        block = props.get("PublicAccessBlockConfiguration", {})
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if not _true(block.get(flag)):
                problems.append(f"{name}: PublicAccessBlockConfiguration.{flag} is not true")
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if not rules:
            problems.append(f"{name}: no BucketEncryption")
        for rule in rules:
            algorithm = rule.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm")
            if algorithm not in ("AES256", "aws:kms", "aws:kms:dsse"):
                problems.append(f"{name}: SSEAlgorithm {algorithm!r} is not AES256 or aws:kms")

        arns = {S3_ARN + "${%s}" % name, "${%s.Arn}" % name}
        objects = {arn + "/*" for arn in arns}
        policies = [
            (policy_name, policy)
            for policy_name, policy in resources.items()
            if policy["Type"] == "AWS::S3::BucketPolicy" and policy.get("Properties", {}).get("Bucket") == {"Ref": name}
        ]
        if not policies:
            problems.append(f"{name}: no AWS::S3::BucketPolicy refers to it")
            continue
        covers_bucket = covers_objects = False
        for policy_name, policy in policies:
            for st in items(policy["Properties"].get("PolicyDocument", {}).get("Statement", [])):
                secure = st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
                if st.get("Effect") != "Deny" or secure not in ("false", False):
                    continue
                if st.get("Principal") not in ("*", {"AWS": "*"}):
                    continue
                if not {"s3:*"} & set(items(st.get("Action", []))):
                    continue
                rendered = {render(r) for r in items(st.get("Resource", []))}
                covers_bucket |= bool(rendered & arns)
                covers_objects |= bool(rendered & objects)
        if not covers_bucket:
            problems.append(f"{name}: no bucket policy denies s3:* without aws:SecureTransport on the bucket ARN")
        if not covers_objects:
            problems.append(f"{name}: no bucket policy denies s3:* without aws:SecureTransport on the bucket ARN + /*")
    return problems


def check_queues(template: dict[str, Any]) -> list[str]:
    problems = []
    for name, queue in template["Resources"].items():
        if queue["Type"] != "AWS::SQS::Queue":
            continue
        props = queue.get("Properties", {})
        if not (_true(props.get("SqsManagedSseEnabled")) or props.get("KmsMasterKeyId")):
            problems.append(f"{name}: not encrypted (neither SqsManagedSseEnabled nor KmsMasterKeyId)")
    return problems


def check_checkov_skips(template: dict[str, Any]) -> list[str]:
    """Every checkov skip names a check and says why, on one line."""
    problems = []
    for name, resource in template["Resources"].items():
        skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
        seen = set()
        for skip in skips:
            check = skip.get("id", "")
            comment = skip.get("comment", "")
            if not re.fullmatch(r"CKV2?_AWS_\d+", str(check)):
                problems.append(f"{name}: checkov skip id {check!r} is not a CKV_AWS check")
            if not isinstance(comment, str) or len(comment.strip()) < 20 or "\n" in comment.strip():
                problems.append(f"{name}: checkov skip {check} needs a one-line justification")
            if check in seen:
                problems.append(f"{name}: checkov skip {check} given twice")
            seen.add(check)
    return problems


ALL_CHECKS: list[Callable[[dict[str, Any]], list[str]]] = [
    check_actions,
    check_resources,
    check_s3_scope,
    check_mover,
    check_s3_needs,
    check_managed_policies,
    check_resource_policies,
    check_buckets,
    check_queues,
    check_checkov_skips,
]


# ----------------------------------------------------------------- tests


def _resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    return template["Resources"][name]


def _statement(template: dict[str, Any], owner: str, sid: str) -> dict[str, Any]:
    for policy in _resource(template, owner)["Properties"]["Policies"]:
        if isinstance(policy, dict) and "Statement" in policy:
            for st in policy["Statement"]:
                if isinstance(st, dict) and st.get("Sid") == sid:
                    return st
    raise KeyError(f"{owner} has no statement {sid}")


class RealTemplate(unittest.TestCase):
    """template.yaml passes every check."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.template = load_template()

    def test_every_role_is_seen(self) -> None:
        owners = {st.owner for st in identity_statements(self.template)}
        self.assertLessEqual(REQUIRED_OWNERS, owners)

    def test_checks_pass(self) -> None:
        for check in ALL_CHECKS:
            with self.subTest(check=check.__name__):
                self.assertEqual(check(self.template), [])

    def test_star_only_actions_are_all_used(self) -> None:
        # A stale allowance would let '*' back in unnoticed.
        on_star = {
            action
            for st in identity_statements(self.template)
            if st.effect == "Allow" and "*" in st.resources
            for action in st.actions
        }
        self.assertEqual(set(STAR_ONLY_ACTIONS) - on_star, set())

    def test_every_bucket_and_queue_is_checked(self) -> None:
        types = [r["Type"] for r in self.template["Resources"].values()]
        self.assertEqual(types.count("AWS::S3::Bucket"), 2)
        self.assertEqual(types.count("AWS::SQS::Queue"), 2)


class MutatedTemplate(unittest.TestCase):
    """Each check reports what it guards against on a mutated copy."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.original = load_template()

    def mutate(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        template = copy.deepcopy(self.original)
        change(template)
        return template

    def assertReports(self, check: Callable, template: dict[str, Any], *fragments: str) -> None:
        problems = check(template)
        for fragment in fragments:
            self.assertTrue(
                any(fragment in problem for problem in problems),
                f"{check.__name__} did not report {fragment!r}; it reported {problems}",
            )

    # ------------------------------------------------------------- actions

    def test_s3_star_in_mover_policy(self) -> None:
        t = self.mutate(lambda t: _statement(t, "MoverFunction", "ReadAndDeleteSources")["Action"].append("s3:*"))
        self.assertReports(check_actions, t, "MoverFunction (MoverFunctionRolePolicy0 ReadAndDeleteSources): wildcard action s3:*")
        self.assertReports(check_mover, t, "MoverFunction is granted s3:* on")

    def test_star_action_in_state_machine(self) -> None:
        t = self.mutate(lambda t: _statement(t, "CsvMergeStateMachine", "DistributedMapStartsChildren").update(Action="*"))
        self.assertReports(check_actions, t, "CsvMergeStateMachine", "wildcard action *")

    def test_wildcard_in_a_conditional_statement(self) -> None:
        def change(t: dict[str, Any]) -> None:
            statements = _resource(t, "CsvMergerFunction")["Properties"]["Policies"][0]["Statement"]
            statements.append(
                {"Fn::If": ["XRayOn", NO_VALUE, {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}
            )

        t = self.mutate(change)
        self.assertReports(check_actions, t, "CsvMergerFunction", "wildcard action iam:*")
        self.assertReports(check_resources, t, "iam:* on Resource '*'")

    def test_not_action_in_an_iam_role(self) -> None:
        def change(t: dict[str, Any]) -> None:
            st = _resource(t, "MergeScheduleRole")["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
            st["NotAction"] = st.pop("Action")

        self.assertReports(check_actions, self.mutate(change), "MergeScheduleRole", "Allow with NotAction")

    def test_allow_to_anyone_in_a_resource_policy(self) -> None:
        def change(t: dict[str, Any]) -> None:
            st = _resource(t, "MoverDeadLetterQueuePolicy")["Properties"]["PolicyDocument"]["Statement"][0]
            st["Principal"] = "*"

        self.assertReports(check_resource_policies, self.mutate(change), "MoverDeadLetterQueuePolicy", "Principal '*'")

    # ----------------------------------------------------------- resources

    def test_object_action_on_star(self) -> None:
        t = self.mutate(lambda t: _statement(t, "CsvMergerFunction", "ReadSources").update(Resource="*"))
        self.assertReports(check_resources, t, "CsvMergerFunction (CsvMergerFunctionRolePolicy0 ReadSources): s3:GetObject on Resource '*'")
        self.assertReports(check_s3_scope, t, "s3:GetObject on *, not an object ARN")

    def test_unlisted_action_next_to_log_delivery(self) -> None:
        t = self.mutate(
            lambda t: _statement(t, "CsvMergeStateMachine", "ExecutionLogDelivery")["Action"].append("logs:PutLogEvents")
        )
        self.assertReports(check_resources, t, "logs:PutLogEvents on Resource '*'")

    def test_wildcard_region_in_an_arn(self) -> None:
        t = self.mutate(
            lambda t: _statement(t, "CsvMergeStateMachine", "DistributedMapStartsChildren").update(
                Resource={"Fn::Sub": "arn:${AWS::Partition}:states:*:${AWS::AccountId}:stateMachine:x"}
            )
        )
        self.assertReports(check_resources, t, "wildcard in the ARN's partition/service/region/account")

    def test_hard_coded_bucket(self) -> None:
        t = self.mutate(
            lambda t: _statement(t, "ResultsAggregatorFunction", "DeleteSourcesWhenAsked").update(
                Resource="arn:aws:s3:::some-bucket/*"
            )
        )
        self.assertReports(check_s3_scope, t, "s3:DeleteObject on arn:aws:s3:::some-bucket/*, not an object ARN")

    def test_bucket_name_prefix_match(self) -> None:
        # `${SourceBucketName}*` (no slash) also matches every bucket whose name starts with it.
        t = self.mutate(
            lambda t: _statement(t, "MoverFunction", "ReadAndDeleteSources").update(
                Resource={"Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucketName}*"}
            )
        )
        self.assertReports(check_s3_scope, t, "s3:DeleteObject on arn:${AWS::Partition}:s3:::${SourceBucketName}*")

    def test_object_arn_from_a_non_bucket_parameter(self) -> None:
        t = self.mutate(
            lambda t: _statement(t, "CsvMergerFunction", "ReadSources").update(
                Resource={"Fn::Sub": "arn:${AWS::Partition}:s3:::${LogLevel}/*"}
            )
        )
        self.assertReports(check_s3_scope, t, "['LogLevel'] not a *BucketName parameter")

    def test_bucket_management_action(self) -> None:
        t = self.mutate(lambda t: _statement(t, "MoverFunction", "MissingIsNotFoundNotForbidden").update(Action="s3:PutBucketPolicy"))
        self.assertReports(check_s3_scope, t, "s3:PutBucketPolicy is not an S3 action this stack's code uses")

    def test_sam_policy_template(self) -> None:
        # S3CrudPolicy grants bucket-configuration actions none of the code uses.
        t = self.mutate(
            lambda t: _resource(t, "CsvMergerFunction")["Properties"]["Policies"].append(
                {"S3CrudPolicy": {"BucketName": {"Ref": "SourceBucketName"}}}
            )
        )
        self.assertReports(check_s3_scope, t, "s3:PutLifecycleConfiguration is not an S3 action")
        self.assertReports(check_s3_needs, t, "CsvMergerFunction: granted but unused: s3:PutObject on SourceBucketName")

    def test_managed_policy(self) -> None:
        t = self.mutate(
            lambda t: _resource(t, "BatchGeneratorFunction")["Properties"]["Policies"].append(
                "arn:aws:iam::aws:policy/AmazonS3FullAccess"
            )
        )
        self.assertReports(check_managed_policies, t, "BatchGeneratorFunction: managed policy AmazonS3FullAccess")

    # --------------------------------------------------------------- mover

    def test_mover_source_widened_to_the_whole_bucket(self) -> None:
        t = self.mutate(
            lambda t: _statement(t, "MoverFunction", "ReadAndDeleteSources").update(
                Resource={"Fn::Sub": "arn:${AWS::Partition}:s3:::${SourceBucketName}/*"}
            )
        )
        self.assertReports(
            check_mover,
            t,
            "MoverFunction lacks s3:DeleteObject on arn:${AWS::Partition}:s3:::${SourceBucketName}/${SourcePrefix}*",
            "MoverFunction is granted s3:DeleteObject on arn:${AWS::Partition}:s3:::${SourceBucketName}/*",
        )

    def test_mover_extra_action(self) -> None:
        t = self.mutate(lambda t: _statement(t, "MoverFunction", "WriteDestinations")["Action"].append("s3:DeleteObject"))
        self.assertReports(check_mover, t, "MoverFunction is granted s3:DeleteObject on arn:${AWS::Partition}:s3:::${DestBucketName}/${DestPrefix}*")
        self.assertReports(check_s3_needs, t, "MoverFunction: granted but unused: s3:DeleteObject on DestBucketName")

    def test_mover_missing_action(self) -> None:
        t = self.mutate(lambda t: _statement(t, "MoverFunction", "ReadAndDeleteSources")["Action"].remove("s3:GetObjectTagging"))
        self.assertReports(check_mover, t, "MoverFunction lacks s3:GetObjectTagging")
        self.assertReports(check_s3_needs, t, "MoverFunction: used but not granted: s3:GetObjectTagging on SourceBucketName")

    def test_mover_without_failure_destination(self) -> None:
        t = self.mutate(lambda t: _resource(t, "MoverFunction")["Properties"].pop("EventInvokeConfig"))
        self.assertReports(check_mover, t, "MoverFunction lacks sqs:SendMessage on ${MoverDeadLetterQueue.Arn}")

    # ------------------------------------------------------- merge S3 needs

    def test_used_but_not_granted(self) -> None:
        def change(t: dict[str, Any]) -> None:
            statements = _resource(t, "ResultsAggregatorFunction")["Properties"]["Policies"][0]["Statement"]
            statements[:] = [st for st in statements if st.get("Sid") != "DeleteSourcesWhenAsked"]

        self.assertReports(
            check_s3_needs,
            self.mutate(change),
            f"ResultsAggregatorFunction: used but not granted: s3:DeleteObject on {MERGE_SRC}",
        )

    def test_granted_but_unused(self) -> None:
        t = self.mutate(lambda t: _statement(t, "CsvMergerFunction", "ReadSources").update(Action=["s3:GetObject", "s3:PutObject"]))
        self.assertReports(check_s3_needs, t, f"CsvMergerFunction: granted but unused: s3:PutObject on {MERGE_SRC}")

    # ------------------------------------------------------------- buckets

    def test_public_access_not_blocked(self) -> None:
        t = self.mutate(lambda t: _resource(t, "SourceBucket")["Properties"]["PublicAccessBlockConfiguration"].update(BlockPublicPolicy=False))
        self.assertReports(check_buckets, t, "SourceBucket: PublicAccessBlockConfiguration.BlockPublicPolicy is not true")

    def test_public_access_block_missing(self) -> None:
        t = self.mutate(lambda t: _resource(t, "DestBucket")["Properties"].pop("PublicAccessBlockConfiguration"))
        self.assertReports(check_buckets, t, "DestBucket: PublicAccessBlockConfiguration.RestrictPublicBuckets is not true")

    def test_no_encryption(self) -> None:
        t = self.mutate(lambda t: _resource(t, "DestBucket")["Properties"].pop("BucketEncryption"))
        self.assertReports(check_buckets, t, "DestBucket: no BucketEncryption")

    def test_bad_sse_algorithm(self) -> None:
        def change(t: dict[str, Any]) -> None:
            rule = _resource(t, "SourceBucket")["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] = "none"

        self.assertReports(check_buckets, self.mutate(change), "SourceBucket: SSEAlgorithm 'none'")

    def test_no_bucket_policy(self) -> None:
        t = self.mutate(lambda t: t["Resources"].pop("DestBucketPolicy"))
        self.assertReports(check_buckets, t, "DestBucket: no AWS::S3::BucketPolicy refers to it")

    def test_tls_deny_misses_the_objects(self) -> None:
        def change(t: dict[str, Any]) -> None:
            st = _resource(t, "DestBucketPolicy")["Properties"]["PolicyDocument"]["Statement"][0]
            st["Resource"] = st["Resource"][:1]

        self.assertReports(check_buckets, self.mutate(change), "DestBucket: no bucket policy denies s3:* without aws:SecureTransport on the bucket ARN + /*")

    def test_tls_deny_misses_the_bucket(self) -> None:
        def change(t: dict[str, Any]) -> None:
            st = _resource(t, "SourceBucketPolicy")["Properties"]["PolicyDocument"]["Statement"][0]
            st["Resource"] = st["Resource"][1:]

        self.assertReports(check_buckets, self.mutate(change), "SourceBucket: no bucket policy denies s3:* without aws:SecureTransport on the bucket ARN")

    def test_tls_condition_inverted(self) -> None:
        def change(t: dict[str, Any]) -> None:
            st = _resource(t, "SourceBucketPolicy")["Properties"]["PolicyDocument"]["Statement"][0]
            st["Condition"]["Bool"]["aws:SecureTransport"] = "true"

        self.assertReports(check_buckets, self.mutate(change), "SourceBucket: no bucket policy denies")

    # -------------------------------------------------------------- queues

    def test_queue_not_encrypted(self) -> None:
        t = self.mutate(lambda t: _resource(t, "MoverDeadLetterQueue")["Properties"].pop("SqsManagedSseEnabled"))
        self.assertReports(check_queues, t, "MoverDeadLetterQueue: not encrypted")

    def test_queue_encryption_turned_off(self) -> None:
        t = self.mutate(lambda t: _resource(t, "MoverDeadLetterQueue")["Properties"].update(SqsManagedSseEnabled=False))
        self.assertReports(check_queues, t, "MoverDeadLetterQueue: not encrypted")

    # ------------------------------------------------------ checkov skips

    def test_skip_without_justification(self) -> None:
        t = self.mutate(lambda t: _resource(t, "AlarmTopic")["Metadata"]["checkov"]["skip"][0].pop("comment"))
        self.assertReports(check_checkov_skips, t, "AlarmTopic: checkov skip CKV_AWS_26 needs a one-line justification")

    def test_skip_of_a_non_check(self) -> None:
        t = self.mutate(lambda t: _resource(t, "AlarmTopic")["Metadata"]["checkov"]["skip"][0].update(id="ALL"))
        self.assertReports(check_checkov_skips, t, "AlarmTopic: checkov skip id 'ALL' is not a CKV_AWS check")


if __name__ == "__main__":
    unittest.main()
