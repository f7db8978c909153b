"""ECS task state change events and their delivery by EventBridge rules, as AWS does it.

moto's ECS emits no events at all, and moto's EventBridge (which delivers only what PutEvents
sends it) matches patterns on flattened objects only (a field inside an array, such as
`detail.containers.exitCode`, never matches), has no SNS target (NotImplementedError) and
ignores the resource policies that real AWS needs before it delivers. So the layer plays both:

- **ECS**: when the layer first shows a task STOPPED (RunTask, DescribeTasks or StopTask answer,
  or `finish_task`), it builds the "ECS Task State Change" event with the fields of the example
  in the ECS developer guide, "Amazon ECS task state change events"
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html):
  `detail.clusterArn, taskArn, taskDefinitionArn, group, startedBy, lastStatus, desiredStatus,
  stopCode, stoppedReason, containers[] (name, exitCode, lastStatus, ...), createdAt, startedAt,
  stoppingAt, stoppedAt, overrides, launchType, version`, times as ISO 8601 with milliseconds.
- **EventBridge** (default bus): every rule of the task's region whose pattern matches (the
  matching rules of the EventBridge user guide, "Event patterns": arrays match when any element
  does; exact values, `prefix`, `numeric`, `anything-but`, `exists`, `$or`) gets the event, its
  targets the event or the InputTransformer's output ("Transforming target input": `<name>`
  placeholders from InputPathsMap, a string template delivered as the string).
- **Targets**: a CloudWatch Logs group gets one log event (the event JSON) only when a Logs
  resource policy lets `events.amazonaws.com` `logs:PutLogEvents` on it; an SNS topic gets a
  Publish (moto then delivers to its SQS subscriptions) only when the topic policy lets
  `events.amazonaws.com` `sns:Publish`; an SQS queue gets SendMessage. EventBridge user guide,
  "Using resource-based policies for Amazon EventBridge" (sections "Amazon CloudWatch Logs
  permissions" and "Amazon SNS permissions"): without them the invocation fails and the rule's
  `FailedInvocations` metric counts it; nothing is delivered. The layer counts those in
  `state["event_failures"]` (rule name, target ARN, why) and what it delivered in
  `state["event_deliveries"]`.

Delivery happens before the answer that showed the task STOPPED returns (real EventBridge takes
up to seconds); readers must poll all the same.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

EVENTS_PRINCIPAL = "events.amazonaws.com"


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(float(epoch), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def task_event(task: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event ECS sends when `task` (a DescribeTasks task, times in epoch seconds)
    reached STOPPED."""
    arn = str(task["taskArn"])
    _, _, _, region, account, _ = arn.split(":", 5)
    containers = []
    for container in task.get("containers") or []:
        entry = {
            "containerArn": container.get("containerArn", ""),
            "lastStatus": "STOPPED",
            "name": container.get("name", ""),
            "image": container.get("image", ""),
            "taskArn": arn,
            "networkInterfaces": container.get("networkInterfaces", []),
            "cpu": str(container.get("cpu", "0")),
        }
        for key in ("exitCode", "reason"):
            if container.get(key) is not None:
                entry[key] = container[key]
        containers.append(entry)
    detail: dict[str, Any] = {
        "attachments": task.get("attachments", []),
        "availabilityZone": task.get("availabilityZone", f"{region}a"),
        "clusterArn": task.get("clusterArn", ""),
        "containers": containers,
        "cpu": str(task.get("cpu", "")),
        "createdAt": iso(task.get("createdAt")),
        "desiredStatus": "STOPPED",
        "group": task.get("group") or "",
        "launchType": task.get("launchType", "FARGATE"),
        "lastStatus": "STOPPED",
        "memory": str(task.get("memory", "")),
        "overrides": task.get("overrides") or {"containerOverrides": []},
        "platformVersion": task.get("platformVersion", "1.4.0"),
        "connectivity": "CONNECTED",
        "startedBy": task.get("startedBy", ""),
        "stopCode": task.get("stopCode", ""),
        "stoppedReason": task.get("stoppedReason", ""),
        "taskArn": arn,
        "taskDefinitionArn": task.get("taskDefinitionArn", ""),
        "updatedAt": iso(task.get("stoppedAt")),
        "version": 5,
    }
    for key in ("startedAt", "stoppingAt", "stoppedAt", "pullStartedAt", "pullStoppedAt"):
        if task.get(key) is not None:
            detail[key] = iso(task[key])
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": account,
        "time": iso(task.get("stoppedAt") or time.time())[:19] + "Z",  # type: ignore[index]
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


# -- event patterns ------------------------------------------------------------------------------

_MISSING = object()


def _values(node: Any, path: list[str]) -> list[Any]:
    """Every value at `path`, arrays along the way flattened, as EventBridge does."""
    if isinstance(node, list):
        return [value for item in node for value in _values(item, path)]
    if not path:
        return [node]
    if not isinstance(node, dict) or path[0] not in node:
        return []
    return _values(node[path[0]], path[1:])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _filter_matches(values: list[Any], present: bool, rule: Any) -> bool:
    if not isinstance(rule, dict):
        return any(value == rule for value in values)
    (name, arg), *_ = rule.items()
    if name == "exists":
        return present == bool(arg)
    if name == "prefix":
        return any(isinstance(v, str) and v.startswith(str(arg)) for v in values)
    if name == "suffix":
        return any(isinstance(v, str) and v.endswith(str(arg)) for v in values)
    if name == "numeric":
        ops = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            "=": lambda a, b: a == b,
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
        }
        pairs = list(zip(arg[::2], arg[1::2], strict=False))
        return any(
            (num := _number(v)) is not None and all(ops[op](num, float(b)) for op, b in pairs)
            for v in values
        )
    if name == "anything-but":
        banned = arg if isinstance(arg, list) else [arg]
        if isinstance(arg, dict):
            return any(not _filter_matches([v], True, arg) for v in values)
        return any(v not in banned for v in values)
    raise ValueError(f"event pattern filter {name!r} is not modelled by the stack")


def matches(pattern: dict[str, Any], event: Any, path: tuple[str, ...] = ()) -> bool:
    """Fields are matched on their flattened paths: `containers: {name, exitCode}` tests every
    container's name and every container's exit code independently, as EventBridge does."""
    for key, rule in pattern.items():
        if key == "$or":
            if not any(matches(branch, event, path) for branch in rule):
                return False
            continue
        if isinstance(rule, dict):
            if not matches(rule, event, (*path, key)):
                return False
            continue
        values = _values(event, [*path, key])
        present = bool(values)
        if not any(_filter_matches(values, present, item) for item in rule):
            return False
    return True


# -- input transformers --------------------------------------------------------------------------


def _json_path(event: Any, path: str) -> Any:
    node = event
    for part in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", path[1:]):
        key, index = part
        if key:
            if not isinstance(node, dict) or key not in node:
                return _MISSING
            node = node[key]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return _MISSING
            node = node[int(index)]
    return node


def transform(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """InputTransformer: placeholders become the values at their paths (strings unquoted, the rest
    as JSON, a missing path as an empty string); a template that is one quoted string delivers the
    string inside."""
    text = str(transformer.get("InputTemplate", ""))
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        value = _json_path(event, str(path))
        if value is _MISSING or value is None:
            shown = ""
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value)
        text = text.replace(f"<{name}>", shown)
    text = text.replace("<aws.events.event.json>", json.dumps(event))
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


# -- resource policies ---------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allows(policy: dict[str, Any] | None, action: str, resource: str, source_arn: str) -> bool:
    """Whether `policy` lets EventBridge (the service principal) do `action` on `resource`."""
    for statement in _as_list((policy or {}).get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal") or {}
        services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if principal != "*" and EVENTS_PRINCIPAL not in services:
            continue
        service = action.split(":", 1)[0]
        actions = _as_list(statement.get("Action", []))
        if not any(a in ("*", f"{service}:*") or a == action for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, str(r)) for r in _as_list(statement["Resource"])):
            continue
        condition_ok = True
        for test, keys in (statement.get("Condition") or {}).items():
            for key, expected in keys.items():
                actual = source_arn if key.lower() == "aws:sourcearn" else ""
                if key.lower() == "aws:sourceaccount":
                    actual = source_arn.split(":")[4]
                wanted = [str(e) for e in _as_list(expected)]
                if test in ("ArnLike", "StringLike"):
                    ok = any(fnmatch.fnmatchcase(actual, w) for w in wanted)
                else:
                    ok = actual in wanted
                condition_ok = condition_ok and ok
        if condition_ok:
            return True
    return False


# -- delivery ------------------------------------------------------------------------------------


class EventBus:
    """Delivers events to the rules and targets stored in moto (read with boto3, directly)."""

    def __init__(self, upstream: str, state: dict[str, Any], lock: threading.RLock) -> None:
        self.upstream = upstream
        self.state = state
        self.lock = lock

    def client(self, service: str, region: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.upstream,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def _record(self, key: str, entry: tuple[str, ...]) -> None:
        with self.lock:
            self.state.setdefault(key, []).append(entry)

    def put(self, event: dict[str, Any]) -> None:
        region = str(event["region"])
        events = self.client("events", region)
        for rule in events.get_paginator("list_rules").paginate().build_full_result()["Rules"]:
            if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                continue
            if not matches(json.loads(rule["EventPattern"]), event):
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
            for target in targets:
                self._deliver(rule, target, event, region)

    def _deliver(
        self, rule: dict[str, Any], target: dict[str, Any], event: dict[str, Any], region: str
    ) -> None:
        arn = str(target["Arn"])
        if "InputTransformer" in target:
            body = transform(target["InputTransformer"], event)
        elif "Input" in target:
            body = str(target["Input"])
        else:
            body = json.dumps(event)
        why = ""
        if arn.startswith("arn:aws:logs:"):
            why = self._to_logs(arn, body, event, region, rule["Arn"])
        elif arn.startswith("arn:aws:sns:"):
            why = self._to_sns(arn, body, region, rule["Arn"])
        elif arn.startswith("arn:aws:sqs:"):
            name = arn.rsplit(":", 1)[-1]
            sqs = self.client("sqs", region)
            sqs.send_message(
                QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"], MessageBody=body
            )
        else:
            why = "target kind not modelled by the stack"
        if why:
            self._record("event_failures", (rule["Name"], arn, why))
        else:
            self._record("event_deliveries", (rule["Name"], arn, body))

    def _to_logs(self, arn: str, body: str, event: dict[str, Any], region: str, source: str) -> str:
        group = arn.split(":log-group:", 1)[1].removesuffix(":*")
        logs = self.client("logs", region)
        stream = str(uuid.uuid4())  # EventBridge writes each event to its own stream
        stream_arn = f"{arn.removesuffix(':*')}:log-stream:{stream}"
        policies = logs.describe_resource_policies().get("resourcePolicies", [])
        if not any(
            allows(json.loads(p["policyDocument"]), "logs:PutLogEvents", stream_arn, source)
            for p in policies
        ):
            return "no CloudWatch Logs resource policy allows events.amazonaws.com"
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except logs.exceptions.ResourceNotFoundException:
            return f"log group {group} does not exist"
        stamp = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": int(stamp.timestamp() * 1000), "message": body}],
        )
        return ""

    def _to_sns(self, arn: str, body: str, region: str, source: str) -> str:
        sns = self.client("sns", region)
        try:
            attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        except sns.exceptions.NotFoundException:
            return f"topic {arn} does not exist"
        policy = json.loads(attributes.get("Policy") or "{}")
        if not allows(policy, "sns:Publish", arn, source):
            return "the topic policy does not allow events.amazonaws.com to publish"
        sns.publish(TopicArn=arn, Message=body)
        return ""
