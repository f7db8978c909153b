"""A test knob, not an AWS rule: shorter-lived AssumeRole credentials, to watch rotation in one run.

AWS issues role sessions for at least 900 s (AssumeRole DurationSeconds, botocore sts model
`roleDurationSecondsType` min 900) and the ECS agent hands a task new ones well before they expire;
waiting for that in a test is out of the question. With `settings.assume_role_lifetime_s` > 0 the
layer rewrites the `Expiration` of moto's AssumeRole answer to now + that many seconds (moto keeps
the session valid; only the advertised expiry moves), so whatever caches role credentials until
shortly before `Expiration` (run-local's task-role endpoint, the credential shim) fetches new ones
within seconds. 0 (the default) leaves the answer alone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.stack.proxybase import Answer, Call
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


RULES = [StrictRule("sts.assume_role_lifetime", "sts", ("AssumeRole",), after=assume_role_lifetime)]
