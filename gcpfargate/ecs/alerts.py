"""Failure alerts: an EventBridge rule that sends the family's failed runs to an SNS topic.

`[notify] topic_arn` names a topic, or `create_topic = true` makes `gcpfargate-<family>-alerts`
(with an `email` subscription, which the recipient confirms from the mail AWS sends). deploy then
makes sure of:

- the rule `gcpfargate-<family>-failed`: a STOPPED task of the family that failed to start
  (stopCode `TaskFailedToStart`) or where a container exited non-zero. EventBridge matches array
  fields element by element without pairing them, so a non-essential sidecar's non-zero exit
  alerts too;
- its target, the topic, with an input transformer that writes one line: which job (the task's
  ECS group, `job:<name>` for jobs), exit code, stop code and reason, and the task;
- the topic policy statement `gcpfargate-events-publish` that lets `events.amazonaws.com` publish
  (EventBridge user guide, "Amazon SNS permissions": without it nothing is delivered). It is added
  beside the topic's other statements, which stay as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gcpfargate.core import plan as planning
from gcpfargate.core.context import Context
from gcpfargate.core.plan import Change
from gcpfargate.core.results import plan_json
from gcpfargate.ecs import history
from gcpfargate.errors import ConfigError

TARGET_ID = "gcpfargate-failure-alert"
STATEMENT_ID = "gcpfargate-events-publish"

# Input transformer: one line an e-mail reader understands. A container that never ran has no
# exit code: EventBridge leaves that placeholder empty.
INPUT_PATHS = {
    "group": "$.detail.group",
    "exitCode": "$.detail.containers[0].exitCode",
    "stopCode": "$.detail.stopCode",
    "reason": "$.detail.stoppedReason",
    "task": "$.detail.taskArn",
    "stoppedAt": "$.detail.stoppedAt",
}


def input_template(family: str) -> str:
    return (
        f'"gcpfargate: a run of {family} failed: job <group>, exit code <exitCode>, '
        '<stopCode>: <reason> (task <task>, stopped <stoppedAt>)"'
    )


def failed_pattern(task_definition_arn: str, family: str) -> dict[str, Any]:
    pattern = history.stopped_pattern(task_definition_arn, family)
    pattern["detail"]["$or"] = [
        {"stopCode": ["TaskFailedToStart"]},
        {"containers": {"exitCode": [{"anything-but": 0}]}},
    ]
    return pattern


def configured(ctx: Context) -> bool:
    notify = getattr(ctx.settings, "notify", None)
    return bool(notify and (notify.topic_arn or notify.create_topic))


def topic_arn(ctx: Context, task_definition_arn: str) -> str:
    notify = ctx.settings.notify
    if notify.topic_arn:
        return str(notify.topic_arn)
    _, partition, _, region, account, _ = task_definition_arn.split(":", 5)
    name = history.short_name(f"gcpfargate-{ctx.settings.family}-alerts", ctx.settings.family)
    return f"arn:{partition}:sns:{region}:{account}:{name}"


def publish_statement(topic: str, rule_arn: str) -> dict[str, Any]:
    return {
        "Sid": STATEMENT_ID,
        "Effect": "Allow",
        "Principal": {"Service": history.EVENTS_PRINCIPAL},
        "Action": "sns:Publish",
        "Resource": topic,
        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
    }


def allows_events(policy: dict[str, Any], topic: str) -> bool:
    """Whether a statement lets EventBridge publish to `topic` (any Sid, any condition)."""
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal") or {}
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = services if isinstance(services, list) else [services]
        actions = statement.get("Action") or []
        actions = actions if isinstance(actions, list) else [actions]
        resources = statement.get("Resource") or []
        resources = resources if isinstance(resources, list) else [resources]
        if (
            statement.get("Effect") == "Allow"
            and (principal == "*" or history.EVENTS_PRINCIPAL in services)
            and any(a in ("sns:Publish", "sns:*", "*") for a in actions)
            and any(r in (topic, "*") for r in resources)
        ):
            return True
    return False


@dataclass
class AlertResult:
    topic_arn: str
    rule: str
    changed: bool = False
    plan: list[Change] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "changed": self.changed,
            "topic_arn": self.topic_arn,
            "rule": self.rule,
        }
        if self.plan:
            data["plan"] = plan_json(self.plan)
        return data


def topic_attributes(ctx: Context, topic: str) -> dict[str, Any] | None:
    # SNS answers a missing topic with the code "NotFound" (botocore's NotFoundException).
    found = ctx.aws.find(
        "sns",
        "get_topic_attributes",
        ("NotFound", "NotFoundException"),
        f"read topic {topic}",
        TopicArn=topic,
    )
    return None if found is None else dict(found.get("Attributes") or {})


def ensure(ctx: Context, task_definition_arn: str) -> AlertResult:
    notify = ctx.settings.notify
    family = ctx.settings.family
    topic = topic_arn(ctx, task_definition_arn)
    topic_name = topic.rsplit(":", 1)[-1]
    name = history.rule_name(family, "failed")
    _, partition, _, region, account, _ = task_definition_arn.split(":", 5)
    rule_arn = f"arn:{partition}:events:{region}:{account}:rule/{name}"
    mark = ctx.plan.mark()
    with ctx.reporter.step("Checking the failure alerts"):
        attributes = topic_attributes(ctx, topic)
        if attributes is None:
            if notify.topic_arn:
                raise ConfigError(
                    f"notify.topic_arn {topic} does not exist",
                    "Create the topic, or set notify.create_topic = true instead",
                )
            ctx.plan.change(
                planning.create("SNS topic", topic_name, f"create SNS topic {topic_name}"),
                lambda: ctx.aws.call(
                    "sns",
                    "create_topic",
                    "create the alert topic",
                    Name=topic_name,
                    Tags=history.TAGS,
                ),
            )
        policy = json.loads(str((attributes or {}).get("Policy") or "{}"))
        if not allows_events(policy, topic):
            ctx.plan.change(
                planning.update(
                    "SNS topic policy",
                    topic,
                    f"let EventBridge publish to {topic} (topic policy {STATEMENT_ID})",
                    after={"statement": STATEMENT_ID},
                ),
                lambda: _allow_events(ctx, topic, rule_arn, policy, attributes is None),
            )
        if notify.email:
            _ensure_email(ctx, topic, str(notify.email), attributes is None)
        target = {
            "Id": TARGET_ID,
            "Arn": topic,
            "InputTransformer": {
                "InputPathsMap": INPUT_PATHS,
                "InputTemplate": input_template(family),
            },
        }
        history.ensure_rule(
            ctx,
            name,
            failed_pattern(task_definition_arn, family),
            f"Sends failed runs of {family} to {topic_name}",
            target,
        )
    changed = ctx.plan.apply and bool(ctx.plan.since(mark))  # a preview changes nothing
    return AlertResult(topic, name, changed=changed, plan=ctx.plan.shown(mark))


def _allow_events(
    ctx: Context, topic: str, rule_arn: str, policy: dict[str, Any], new: bool
) -> None:
    """Add the publish statement beside the topic policy's other statements."""
    if new:  # a new topic: its default policy
        fresh = topic_attributes(ctx, topic) or {}
        policy = json.loads(str(fresh.get("Policy") or "{}"))
    statements = [s for s in policy.get("Statement") or [] if s.get("Sid") != STATEMENT_ID]
    policy = {
        "Version": policy.get("Version", "2012-10-17"),
        **({"Id": policy["Id"]} if "Id" in policy else {}),
        "Statement": [*statements, publish_statement(topic, rule_arn)],
    }
    ctx.aws.call(
        "sns",
        "set_topic_attributes",
        "write the topic policy",
        TopicArn=topic,
        AttributeName="Policy",
        AttributeValue=json.dumps(policy),
    )


def _ensure_email(ctx: Context, topic: str, email: str, new: bool) -> None:
    subscriptions = (
        []
        if new
        else ctx.aws.paginate(
            "sns",
            "list_subscriptions_by_topic",
            "Subscriptions",
            f"read the subscriptions of {topic}",
            TopicArn=topic,
        )
    )
    if any(
        s.get("Protocol") == "email" and str(s.get("Endpoint", "")).lower() == email.lower()
        for s in subscriptions
    ):
        return
    ctx.plan.change(
        planning.create(
            "SNS subscription",
            f"{topic}/{email}",
            f"subscribe {email} to {topic} (AWS mails a confirmation link)",
        ),
        lambda: ctx.aws.call(
            "sns",
            "subscribe",
            f"subscribe {email}",
            TopicArn=topic,
            Protocol="email",
            Endpoint=email,
        ),
    )
