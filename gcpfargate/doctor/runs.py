"""doctor's checks of the run history, the failure alerts and the jobs' last runs.

- `runs.history`: the rule `gcpfargate-<family>-runs` exists, is gcpfargate's, is enabled, targets
  the group `/gcpfargate/<family>/runs`, which exists, and a Logs resource policy lets EventBridge
  write there (without one the rule matches and nothing is kept);
- `alerts.rule` (with [notify]): the topic exists and its policy lets EventBridge publish, and the
  rule `gcpfargate-<family>-failed` targets it;
- `jobs.last_run`: WARN for every job whose last run in the history failed.
"""

from __future__ import annotations

import json
from typing import Any

from gcpfargate.core.checks import DoctorEntry, Facts, Skip, Status
from gcpfargate.core.context import Context
from gcpfargate.ecs import alerts, history
from gcpfargate.ecs.cluster import latest_revision


def runs_checks() -> list[DoctorEntry]:
    return [
        ("runs.history", "run history is kept", "runs", _history),
        ("alerts.rule", "failed runs reach the alert topic", "runs", _alerts),
        ("jobs.last_run", "jobs' last runs succeeded", "runs", _last_runs),
    ]


def _revision_arn(ctx: Context, facts: Facts) -> str:
    revision = latest_revision(ctx, facts)
    if revision is None:
        raise Skip("no registered revision")
    return str(revision["taskDefinitionArn"])


def _rule_targets(ctx: Context, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    rule = history.describe_rule(ctx, name)
    if rule is None:
        return None, []
    targets = ctx.aws.paginate(
        "events", "list_targets_by_rule", "Targets", f"read targets of {name}", Rule=name
    )
    return rule, targets


def _history(ctx: Context, facts: Facts) -> tuple[Status, str]:
    arn = _revision_arn(ctx, facts)
    family = ctx.settings.family
    name, group = history.rule_name(family), history.log_group(family)
    _, partition, _, region, account, _ = arn.split(":", 5)
    group_arn = f"arn:{partition}:logs:{region}:{account}:log-group:{group}"
    rule, targets = _rule_targets(ctx, name)
    if rule is None:
        return (
            Status.WARN,
            f"no rule {name}: stopped runs are not kept (`gcpfargate deploy` adds it)",
        )
    if not history.owned(rule):
        return Status.WARN, f"rule {name} was not created by gcpfargate; not checked"
    if rule.get("State") != "ENABLED":
        return Status.FAIL, f"rule {name} is {rule.get('State')}: stopped runs are not kept"
    if not any(str(t.get("Arn", "")).removesuffix(":*") == group_arn for t in targets):
        return (
            Status.FAIL,
            f"rule {name} does not deliver to {group} (`gcpfargate deploy` fixes it)",
        )
    if not ctx.aws.paginate(
        "logs", "describe_log_groups", "logGroups", f"look up {group}", logGroupNamePrefix=group
    ):
        return Status.FAIL, f"log group {group} does not exist (`gcpfargate deploy` creates it)"
    policies = ctx.aws.call(
        "logs", "describe_resource_policies", "read the CloudWatch Logs resource policies"
    ).get("resourcePolicies", [])
    if not any(
        history.policy_allows(json.loads(str(p.get("policyDocument") or "{}")), group_arn)
        for p in policies
    ):
        return (
            Status.FAIL,
            f"no Logs resource policy lets EventBridge write to {group}: the rule matches and "
            "nothing is kept (`gcpfargate deploy` adds one)",
        )
    return Status.OK, f"{name} -> {group}"


def _alerts(ctx: Context, facts: Facts) -> tuple[Status, str]:
    if not alerts.configured(ctx):
        raise Skip("no [notify] topic_arn or create_topic")
    arn = _revision_arn(ctx, facts)
    topic = alerts.topic_arn(ctx, arn)
    attributes = alerts.topic_attributes(ctx, topic)
    if attributes is None:
        return Status.FAIL, f"topic {topic} does not exist"
    if not alerts.allows_events(json.loads(str(attributes.get("Policy") or "{}")), topic):
        return (
            Status.FAIL,
            f"the policy of {topic} does not let events.amazonaws.com publish: alerts are "
            "dropped (`gcpfargate deploy` adds the statement)",
        )
    name = history.rule_name(ctx.settings.family, "failed")
    rule, targets = _rule_targets(ctx, name)
    if rule is None:
        return Status.FAIL, f"no rule {name} (`gcpfargate deploy` adds it)"
    if not history.owned(rule):
        return Status.WARN, f"rule {name} was not created by gcpfargate; not checked"
    if rule.get("State") != "ENABLED" or not any(t.get("Arn") == topic for t in targets):
        return Status.FAIL, f"rule {name} does not send to {topic} (`gcpfargate deploy` fixes it)"
    return Status.OK, f"{name} -> {topic}"


def _last_runs(ctx: Context, facts: Facts) -> tuple[Status, str]:
    runs = history.read_runs(ctx, ctx.settings.family)
    if runs is None:
        raise Skip("no run history yet")
    configured = getattr(ctx.settings, "jobs", None) or {}
    last: dict[str, history.Run] = {}
    for run in runs:  # newest first
        if run.job:
            last.setdefault(run.job, run)
    names = list(configured) or sorted(last)
    if not names:
        raise Skip("no jobs")
    failed = [
        f"{name} (exit {last[name].exit_code if last[name].exit_code is not None else '-'}, "
        f"{last[name].stop_code or 'stopped'}: {last[name].reason or 'no reason'}, "
        f"{last[name].stopped})"
        for name in names
        if name in last and last[name].failed
    ]
    if failed:
        return Status.WARN, "last run failed: " + "; ".join(failed)
    ran = sum(1 for name in names if name in last)
    return Status.OK, f"{ran} of {len(names)} jobs ran; every last run succeeded"
