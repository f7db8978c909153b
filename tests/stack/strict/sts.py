"""AssumeRole as STS does it: the role's trust policy decides who may assume it; and a test knob,
shorter-lived AssumeRole credentials, to watch rotation in one run.

Trust (`sts.trust_policy`): moto assumes any role for anyone. AWS evaluates the role's trust policy
("IAM JSON policy elements: Principal", "Policy evaluation logic: cross-account and role trust"):
an explicit Deny wins, else one Allow statement must name the caller (its user or role ARN, its
account's root or bare account id, or "*"), the action (`sts:AssumeRole`, `sts:*`, `*`) and meet
its conditions; a service principal never matches a person. Refused (and a role that does not
exist, too) with `AccessDenied`, HTTP 403: "User: <caller> is not authorized to perform:
sts:AssumeRole on resource: <role arn>" (the text as in aws/aws-cli#4410, hashicorp/
terraform-provider-aws#8905). Condition keys a person's AssumeRole carries here: aws:PrincipalArn
(the caller's user or role ARN), aws:PrincipalAccount, aws:MultiFactorAuthPresent (the request
sends SerialNumber and TokenCode); a key the request does not carry fails its condition, as in
IAM, unless the operator ends in `IfExists`. The caller's own identity policy is not evaluated: the
stack's callers are the account's administrator.

AWS issues role sessions for at least 900 s (AssumeRole DurationSeconds, botocore sts model
`roleDurationSecondsType` min 900) and the ECS agent hands a task new ones well before they expire;
waiting for that in a test is out of the question. With `settings.assume_role_lifetime_s` > 0 the
layer rewrites the `Expiration` of moto's AssumeRole answer to now + that many seconds (moto keeps
the session valid; only the advertised expiry moves), so whatever caches role credentials until
shortly before `Expiration` (run-local's task-role endpoint, the credential shim) fetches new ones
within seconds. 0 (the default) leaves the answer alone.
"""

from __future__ import annotations

import fnmatch
import html
import json
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.stack.proxybase import Answer, Call, aws_error
from tests.stack.strict.layer import StrictLayer, StrictRule

_EXPIRATION = re.compile(rb"<Expiration>[^<]*</Expiration>")


def assume_role_lifetime(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    lifetime = layer.settings.assume_role_lifetime_s
    if lifetime <= 0:
        return answer
    expires = (datetime.now(UTC) + timedelta(seconds=lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ")
    layer.count("sts.assume_role_lifetime")
    return Answer(
        answer.status,
        _EXPIRATION.sub(f"<Expiration>{expires}</Expiration>".encode(), answer.body),
        answer.headers,
    )


_TRUST = re.compile(rb"<AssumeRolePolicyDocument>([^<]*)</AssumeRolePolicyDocument>")
_ARN = re.compile(rb"<Arn>([^<]*)</Arn>")


def _ask(layer: StrictLayer, like: Call, service: str, form: dict[str, str]) -> Answer:
    """A query-protocol call straight to moto, signed (moto only reads the scope) for `service`."""
    headers = {k: v for k, v in like.headers.items() if k.lower() != "content-length"}
    for key in headers:
        if key.lower() == "authorization":
            headers[key] = re.sub(r"/sts/aws4_request", f"/{service}/aws4_request", headers[key])
    headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return layer.forward(Call("POST", "/", headers, urllib.parse.urlencode(form).encode()))


def _values(value: Any) -> list[str]:
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def _principal_arn(caller: str) -> str:
    # An assumed-role session is judged by its role's ARN (aws:PrincipalArn); the role's path is
    # not in the session ARN, so the layer's roles are taken as having none.
    match = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/.*", caller)
    return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}" if match else caller


def _names_caller(principal: Any, caller: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    account = caller.split(":")[4]
    named = _values(principal.get("AWS", []))
    return any(
        item in ("*", account, f"arn:{caller.split(':')[1]}:iam::{account}:root", caller)
        for item in named
    )


def _condition_holds(operator: str, key: str, wanted: Any, context: dict[str, str]) -> bool:
    base = operator.removesuffix("IfExists")
    if key.lower() not in context:
        return operator.endswith("IfExists")
    actual = context[key.lower()]
    patterns = _values(wanted)
    if base in ("StringEquals", "ArnEquals"):
        return actual in patterns
    if base in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(actual, pattern) for pattern in patterns)
    if base == "Bool":
        return actual.lower() in (p.lower() for p in patterns)
    return False  # an operator the layer does not know: not met (never a silent Allow)


def _statement_applies(statement: dict[str, Any], caller: str, context: dict[str, str]) -> bool:
    actions = _values(statement.get("Action", []))
    if not any(fnmatch.fnmatchcase("sts:assumerole", a.lower()) for a in actions):
        return False
    if not _names_caller(statement.get("Principal"), caller):
        return False
    return all(
        _condition_holds(operator, key, wanted, context)
        for operator, keys in (statement.get("Condition") or {}).items()
        for key, wanted in keys.items()
    )


def trust_policy(layer: StrictLayer, call: Call) -> Answer | None:
    form = call.form()
    role_arn = form.get("RoleArn", "")
    identity = _ask(layer, call, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    found = _ARN.search(identity.body)
    # moto names an IAM user arn:aws:sts::<account>:user/<name>; AWS names it in iam.
    caller = re.sub(
        r"^(arn:[\w-]+):sts::(\d{12}):user/",
        r"\1:iam::\2:user/",
        found.group(1).decode() if found else "",
    )
    role = _ask(
        layer,
        call,
        "iam",
        {"Action": "GetRole", "Version": "2010-05-08", "RoleName": role_arn.rsplit("/", 1)[-1]},
    )
    document = _TRUST.search(role.body) if role.status < 300 else None
    statements: list[dict[str, Any]] = []
    if document is not None:
        text = urllib.parse.unquote(html.unescape(document.group(1).decode()))
        parsed = json.loads(text).get("Statement", [])
        statements = parsed if isinstance(parsed, list) else [parsed]
    principal = _principal_arn(caller)
    context = {
        "aws:principalarn": principal,
        "aws:principalaccount": principal.split(":")[4] if principal.count(":") >= 5 else "",
    }
    if form.get("SerialNumber") and form.get("TokenCode"):
        context["aws:multifactorauthpresent"] = "true"
    applying = [s for s in statements if _statement_applies(s, principal, context)]
    effects = {s.get("Effect") for s in applying}
    if "Allow" in effects and "Deny" not in effects:
        return None
    return aws_error(
        call,
        403,
        "AccessDenied",
        f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
    )


RULES = [
    StrictRule("sts.trust_policy", "sts", ("AssumeRole",), before=trust_policy),
    StrictRule("sts.assume_role_lifetime", "sts", ("AssumeRole",), after=assume_role_lifetime),
]
