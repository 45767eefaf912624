"""template.yaml as CloudFormation deploys it for one set of parameters.

The stack's conditions pick its shape (DeliveryMode direct or sqs,
CreateBuckets true or false). `for_parameters` evaluates them as
CloudFormation does: resources and outputs whose condition is false are
dropped, every Fn::If takes its branch and AWS::NoValue removes what it
stands in. What is left has no conditions, so the SAM translator and the
checks see exactly one deployment. `dangling_references` then finds a Ref,
GetAtt or Sub variable naming something that deployment does not create.
"""

from __future__ import annotations

import copy
import re
from typing import Any

NO_VALUE = {"Ref": "AWS::NoValue"}
_REMOVED = object()

PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    unknown = set(overrides) - set(values)
    if unknown:
        raise KeyError(f"not parameters of the template: {sorted(unknown)}")
    values.update({name: str(value) for name, value in overrides.items()})
    return values


def _value(node: Any, params: dict[str, str]) -> str:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return params[node["Ref"]]
    if isinstance(node, bool):
        return str(node).lower()
    return str(node)


def evaluate(expr: Any, params: dict[str, str], conditions: dict[str, Any]) -> bool:
    """A condition (or rule) expression: Fn::Equals, Not, And, Or, Contains, Condition."""
    (key, value), = expr.items()
    if key == "Condition":
        return evaluate(conditions[value], params, conditions)
    if key == "Fn::Equals":
        left, right = value
        return _value(left, params) == _value(right, params)
    if key == "Fn::Not":
        return not evaluate(value[0], params, conditions)
    if key == "Fn::And":
        return all(evaluate(item, params, conditions) for item in value)
    if key == "Fn::Or":
        return any(evaluate(item, params, conditions) for item in value)
    if key == "Fn::Contains":
        candidates, needle = value
        return _value(needle, params) in {_value(c, params) for c in candidates}
    raise ValueError(f"condition function {key} is not evaluated here")


def _prune(node: Any, truth: dict[str, bool]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return _prune(when_true if truth[condition] else when_false, truth)
        if node == NO_VALUE:
            return _REMOVED
        out = {}
        for key, value in node.items():
            pruned = _prune(value, truth)
            if pruned is not _REMOVED:
                out[key] = pruned
        return out
    if isinstance(node, list):
        return [p for p in (_prune(item, truth) for item in node) if p is not _REMOVED]
    return node


def for_parameters(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The template with its conditions applied for these parameter values."""
    params = parameter_values(template, overrides)
    conditions = template.get("Conditions", {})
    truth = {name: evaluate(expr, params, conditions) for name, expr in conditions.items()}
    out = copy.deepcopy(template)
    out.pop("Conditions", None)
    for section in ("Resources", "Outputs"):
        kept = {}
        for name, item in out.get(section, {}).items():
            condition = item.pop("Condition", None)
            if condition is None or truth[condition]:
                kept[name] = _prune(item, truth)
        out[section] = kept
    out["Globals"] = _prune(out.get("Globals", {}), truth)
    return out


def failed_rules(template: dict[str, Any], **overrides: str) -> list[str]:
    """AssertDescription of every template rule these parameter values break."""
    params = parameter_values(template, overrides)
    conditions = template.get("Conditions", {})
    failed = []
    for name, rule in template.get("Rules", {}).items():
        applies = rule.get("RuleCondition")
        if applies is not None and not evaluate(applies, params, conditions):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluate(assertion["Assert"], params, conditions):
                failed.append(f"{name}: {assertion.get('AssertDescription', '')}")
    return failed


def _sub_names(text: str) -> list[str]:
    return [m for m in re.findall(r"\$\{([^}!][^}]*)\}", text)]


def references(node: Any) -> list[str]:
    """Every name a Ref, GetAtt or Fn::Sub in `node` refers to (`X` or `X.Attr`)."""
    out: list[str] = []
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return [node["Ref"]]
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            return [target if isinstance(target, str) else ".".join(target)]
        if set(node) == {"Fn::Sub"}:
            value = node["Fn::Sub"]
            if isinstance(value, str):
                return _sub_names(value)
            text, variables = value
            out = [name for name in _sub_names(text) if name not in variables]
            for replacement in variables.values():
                out += references(replacement)
            return out
        for value in node.values():
            out += references(value)
    elif isinstance(node, list):
        for item in node:
            out += references(item)
    return out


def dangling_references(resolved: dict[str, Any]) -> list[str]:
    """References in a resolved template to a resource, parameter or pseudo
    parameter it does not have."""
    known = set(resolved.get("Resources", {})) | set(resolved.get("Parameters", {})) | PSEUDO_PARAMETERS
    problems = []
    for section in ("Resources", "Outputs"):
        for name, item in resolved.get(section, {}).items():
            for ref in references(item):
                if ref.split(".")[0] not in known:
                    problems.append(f"{section}.{name} refers to {ref}, which this deployment does not create")
    return problems


def refers_to(node: Any, target: str) -> bool:
    return any(ref.split(".")[0] == target for ref in references(node))
