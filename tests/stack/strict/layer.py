"""The "real rules" layer: an HTTP proxy in front of moto that refuses and rewrites what AWS does.

moto accepts much that AWS refuses (a task definition with `secrets` and no execution role, a
65-character role name) and fills in little that AWS fills in (health-check defaults), so a suite
that only talks to moto passes where production fails. Every rule lives in one of the modules
next to this one, carries the real error text and a comment naming where that text comes from,
and can be switched off on its own:

    layer.disable("ecs.health_check_defaults")          # from the test process
    with layer.without("consistency.pass_role"): ...
    POST {layer.url}/_strict/rules  {"ecs.health_check_defaults": false}   # from anywhere
    POST {layer.url}/_strict/settings {"consistency_delay": 0, "fail_deployments": 1}
    GET  {layer.url}/_strict/        rules, settings and counters as JSON
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.stack.proxybase import Answer, Call, HttpProxy
from tests.stack.strict.recorder import Recorder

ADMIN = "/_strict/"

# Operations that change nothing (by name prefix, AWS's own naming convention). Every other
# operation that moto answers with success is a write (`StrictLayer.writes`). AssumeRole hands out
# credentials but changes no resource; ECR's BatchCheckLayerAvailability only reads.
READ_PREFIXES = (
    "Describe",
    "List",
    "Get",
    "BatchGet",
    "BatchCheck",
    "Head",
    "Filter",
    "Search",
    "Lookup",
    "Simulate",
    "Decode",
    "Assume",
)


def is_write(call: Call) -> bool:
    """Whether a call changes what AWS holds: not a GET/HEAD, not a read by name."""
    if call.method in ("GET", "HEAD"):
        return False
    return not call.operation.startswith(READ_PREFIXES)


Before = Callable[["StrictLayer", Call], "Answer | Call | None"]
After = Callable[["StrictLayer", Call, Answer], Answer]


@dataclass(frozen=True)
class StrictRule:
    name: str  # "ecs.secrets_need_execution_role"
    service: str  # SigV4 signing name: "ecs", "iam", "scheduler"...
    operations: tuple[str, ...]
    before: Before | None = None  # refuse (Answer) or rewrite (Call) the request
    after: After | None = None  # rewrite moto's answer (only successful ones reach it)
    default: bool = True  # on unless switched on explicitly (forced collisions are off)


@dataclass
class Settings:
    # How an IAM change reaches ECS and Scheduler (consistency.py): the first N uses of a changed
    # role by each service are refused, and every use for `consistency_delay` seconds (0: none).
    consistency_refusals: int = 1
    consistency_delay: float = 0.0
    list_secrets_lag: int = 1  # ListSecrets answers that leave out a new secret (secrets.py)
    rollout_seconds: float = 3.0  # how long a simulated service deployment takes to settle
    fail_deployments: int = 0  # the next N service deployments fail (circuit breaker)
    account_id: str = "123456789012"
    ecr_hosts: tuple[str, ...] = ()  # registries that count as ECR (the stack's local registry)
    assume_role_lifetime_s: float = (
        0.0  # > 0: AssumeRole answers expire that soon (sts.py, a test knob)
    )
    # Other accounts' ECR registries: id -> repository -> actions its policy grants (registries.py)
    foreign_registries: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    registry_root: str = ""  # the stack registry's storage: DescribeImages reads it (registries.py)


def all_rules() -> list[StrictRule]:
    # Imported here: the rule modules import this one for StrictRule.
    from tests.stack.strict import (
        collisions,
        consistency,
        ecs,
        names,
        registries,
        secrets,
        services,
        sts,
        tasks,
    )

    return [
        *ecs.RULES,
        *names.RULES,
        *registries.RULES,
        *consistency.RULES,
        *collisions.RULES,
        *services.RULES,
        *sts.RULES,
        *tasks.RULES,
        *secrets.RULES,
    ]


class StrictLayer(HttpProxy[StrictRule]):
    def __init__(
        self,
        upstream: str,
        settings: Settings | None = None,
        off: tuple[str, ...] = (),
        only: tuple[str, ...] | None = None,
    ) -> None:
        """`off`: rules to switch off; `only`: switch on exactly these (e.g. one forced
        collision)."""
        rules = all_rules()
        unknown = (set(off) | set(only or ())) - {rule.name for rule in rules}
        if unknown:
            raise ValueError(f"unknown strict rules: {', '.join(sorted(unknown))}")
        super().__init__(upstream)
        self.settings = settings or Settings()
        self.rules = rules
        self.enabled = {
            rule.name: (rule.name in only)
            if only is not None
            else (rule.default and rule.name not in off)
            for rule in self.rules
        }
        self.fired: Counter[str] = Counter()  # rule name -> refusals/rewrites it made
        self.state: dict[str, Any] = {}  # per-module memory (role change times, deployments)
        self.state_lock = threading.RLock()
        self.recorder = Recorder()  # the product's own operations (the generated AWS policy)
        # Every successful write that reached moto through the layer, in order ("ecs.RunTask"):
        # a test marks `len(writes)` and later asserts nothing was appended (a command that fails
        # on bad input writes nothing), at no cost however much the stack holds.
        self.writes: list[str] = []

    # -- switches ----------------------------------------------------------------------------
    def enable(self, *names: str) -> None:
        self._set(names, True)

    def disable(self, *names: str) -> None:
        self._set(names, False)

    @contextlib.contextmanager
    def without(self, *names: str) -> Iterator[None]:
        before = {name: self.enabled[name] for name in names}
        self.disable(*names)
        try:
            yield
        finally:
            for name, value in before.items():
                self._set((name,), value)

    def _set(self, names: tuple[str, ...], value: bool) -> None:
        with self._lock:
            for name in names:
                if name not in self.enabled:
                    raise ValueError(
                        f"unknown strict rule {name!r}; known: {', '.join(sorted(self.enabled))}"
                    )
                self.enabled[name] = value

    def count(self, name: str) -> None:
        with self._lock:
            self.fired[name] += 1

    @property
    def collisions(self) -> dict[str, int]:
        """Forced collisions so far, per create operation (see `collisions`)."""
        with self.state_lock:
            return dict(self.state.get("collisions_fired", {}))

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rules": dict(self.enabled),
                "fired": dict(self.fired),
                "settings": {k: v for k, v in vars(self.settings).items()},
                "collisions": self.collisions,
                "recorded": sorted(self.recorder.actions),
                "writes": len(self.writes),
            }

    # -- ECS task outcomes and their events (tasks.py, events.py) ------------------------------
    def set_task_outcome(self, task_arn: str, outcome: Any) -> None:
        """How the task ends once stopped (`tasks.Outcome`: exit code, stopCode, reason)."""
        with self.state_lock:
            self.state.setdefault("task_outcomes", {})[task_arn] = outcome

    def finish_task(self, cluster: str, task_arn: str, outcome: Any) -> None:
        """The task's program ended (or never started) as `outcome` says: stopped through the
        layer, so DescribeTasks answers and the task's STOPPED event carry that outcome."""
        import boto3

        self.set_task_outcome(task_arn, outcome)
        region = task_arn.split(":")[3]
        ecs = boto3.client(
            "ecs",
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        ecs.stop_task(cluster=cluster, task=task_arn, reason=outcome.reason)

    def emit_task_event(self, task: dict[str, Any]) -> None:
        from tests.stack.strict import events

        bus = events.EventBus(
            f"http://{self.upstream_host}:{self.upstream_port}", self.state, self.state_lock
        )
        event = events.task_event(task)
        try:
            bus.put(event)
        except Exception as exc:  # a delivery bug must not break the ECS answer it rides on
            with self.state_lock:
                self.state.setdefault("event_failures", []).append(
                    ("(stack)", str(task.get("taskArn")), f"{type(exc).__name__}: {exc}")
                )

    @property
    def event_deliveries(self) -> list[tuple[str, str, str]]:
        """(rule, target ARN, body) of every event the stack delivered."""
        with self.state_lock:
            return list(self.state.get("event_deliveries", []))

    @property
    def event_failures(self) -> list[tuple[str, str, str]]:
        """(rule, target ARN, why) of every invocation that failed (FailedInvocations)."""
        with self.state_lock:
            return list(self.state.get("event_failures", []))

    # -- the proxy ---------------------------------------------------------------------------
    def handle(self, call: Call) -> Answer:
        if call.path.startswith(ADMIN):
            return self._admin(call)
        self.recorder.see(call)
        service, operation = call.service, call.operation
        active = [
            rule
            for rule in self.rules
            if self.enabled.get(rule.name)
            and rule.service == service
            and operation in rule.operations
        ]
        for rule in active:
            if rule.before is None:
                continue
            outcome = rule.before(self, call)
            if isinstance(outcome, Answer):
                self.count(rule.name)
                return outcome
            if isinstance(outcome, Call):
                self.count(rule.name)
                call = outcome
        return self.after(call, self.forward(call), active)

    def after(self, call: Call, answer: Answer, active: list[StrictRule] | None = None) -> Answer:
        """Let the rules see moto's successful answer (a rule that forwarded a call itself calls
        this)."""
        if answer.status >= 300:
            return answer
        if is_write(call):  # moto made the change (a forced collision's create too)
            with self._lock:
                self.writes.append(f"{call.service}.{call.operation}")
        if active is None:
            active = [
                rule
                for rule in self.rules
                if self.enabled.get(rule.name)
                and rule.service == call.service
                and call.operation in rule.operations
            ]
        for rule in active:
            if rule.after is not None:
                answer = rule.after(self, call, answer)
        return answer

    def upstream_json(self, like: Call, target: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Ask moto directly (not through the rules), e.g. for the task definition RunTask names."""
        headers = {k: v for k, v in like.headers.items() if k.lower() != "x-amz-target"}
        headers["X-Amz-Target"] = target
        answer = self.forward(Call("POST", "/", headers, json.dumps(payload).encode()))
        return answer.json() if answer.status < 300 else {}

    def _admin(self, call: Call) -> Answer:
        try:
            if call.method == "POST" and call.path.rstrip("/").endswith("/rules"):
                for name, value in call.json().items():
                    self._set((name,), bool(value))
            elif call.method == "POST" and call.path.rstrip("/").endswith("/settings"):
                with self._lock:
                    for key, value in call.json().items():
                        if not hasattr(self.settings, key):
                            raise ValueError(f"unknown setting {key!r}")
                        setattr(self.settings, key, type(getattr(self.settings, key))(value))
        except ValueError as exc:
            return Answer(
                400,
                json.dumps({"error": str(exc)}).encode(),
                [("Content-Type", "application/json")],
            )
        return Answer(
            200, json.dumps(self.report()).encode(), [("Content-Type", "application/json")]
        )
