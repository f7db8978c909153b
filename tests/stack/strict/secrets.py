"""Secrets Manager version dates: when each version was created, as real Secrets Manager says it.

moto's ListSecretVersionIds answers every version's `CreatedDate` with the time of the *call*
(moto/secretsmanager/models.py, `list_secret_version_ids`: `"CreatedDate": int(time.time())`), and
keeps a version's creation time in whole seconds. Real Secrets Manager returns when each version
was created, to the millisecond: API reference, ListSecretVersionIds -> SecretVersionsListEntry
`CreatedDate` ("The date and time this version of the secret was created",
https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_SecretVersionsListEntry.html)
and GetSecretValue `CreatedDate` ("The date and time that this version of the secret was created",
https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).

gcpfargate compares that date with when ECS tasks started (doctor's service.current_key and
key.previous), so the layer remembers the moment each version was created through it (CreateSecret,
PutSecretValue, UpdateSecret with a value) and answers it in ListSecretVersionIds and
GetSecretValue. A version created past the layer keeps moto's own creation time, read with
GetSecretValue.
"""

from __future__ import annotations

import time
from typing import Any

from tests.stack.proxybase import Answer, Call
from tests.stack.strict.layer import StrictLayer, StrictRule

TARGET = "secretsmanager"
CREATES = ("CreateSecret", "PutSecretValue", "UpdateSecret")


def _created(layer: StrictLayer) -> dict[str, float]:
    return layer.state.setdefault("secret_versions_created", {})


def version_dates(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    payload = answer.json()
    if call.operation in CREATES:
        if payload.get(
            "VersionId"
        ):  # CreateSecret and UpdateSecret without a value create no version
            with layer.state_lock:
                _created(layer).setdefault(str(payload["VersionId"]), round(time.time(), 3))
        return answer
    with layer.state_lock:
        known = dict(_created(layer))
    if call.operation == "GetSecretValue":
        if payload.get("VersionId") in known:
            payload["CreatedDate"] = known[payload["VersionId"]]
        return answer.with_json(payload)
    for version in payload.get("Versions") or []:
        version["CreatedDate"] = known.get(version.get("VersionId")) or _moto_created(
            layer, call, payload, version
        )
    return answer.with_json(payload)


def _moto_created(
    layer: StrictLayer, call: Call, payload: dict[str, Any], version: dict[str, Any]
) -> Any:
    value = layer.upstream_json(
        call,
        f"{TARGET}.GetSecretValue",
        {"SecretId": payload.get("ARN"), "VersionId": version.get("VersionId")},
    )
    return value.get("CreatedDate", version.get("CreatedDate"))


def list_lag(layer: StrictLayer, call: Call, answer: Answer) -> Answer:
    # Source: the ListSecrets API reference: "ListSecrets is eventually consistent, however it might
    # not reflect changes from the last five minutes. To get the latest information for a specific
    # secret, use DescribeSecret." moto lists a secret at once. Here a new secret is left out of the
    # next `Settings.list_secrets_lag` ListSecrets answers: counted, so a test sees the same lag on
    # a fast and a slow machine.
    payload = answer.json()
    with layer.state_lock:
        hidden: dict[str, int] = layer.state.setdefault("secrets_not_listed_yet", {})
        if call.operation == "CreateSecret":
            if payload.get("ARN") and layer.settings.list_secrets_lag > 0:
                hidden[str(payload["ARN"])] = layer.settings.list_secrets_lag
            return answer
        listed = payload.get("SecretList") or []
        kept = [item for item in listed if hidden.get(str(item.get("ARN")), 0) <= 0]
        for arn in list(hidden):
            hidden[arn] -= 1
            if hidden[arn] <= 0:
                del hidden[arn]
    if len(kept) == len(listed):
        return answer
    payload["SecretList"] = kept
    return answer.with_json(payload)


RULES = [
    StrictRule(
        "secretsmanager.list_lag",
        "secretsmanager",
        ("CreateSecret", "ListSecrets"),
        after=list_lag,
    ),
    StrictRule(
        "secretsmanager.version_dates",
        "secretsmanager",
        (*CREATES, "ListSecretVersionIds", "GetSecretValue"),
        after=version_dates,
    ),
]
