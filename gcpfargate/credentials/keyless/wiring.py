"""Keyless wiring: a pure transformation of a task definition, the keyless twin of `wiring.wire`.

The same start-up wrapper writes the credential configuration to `credentials_path` and execs the
program, but the configuration (an `external_account` file with no secret in it) arrives through
`environment`, not `secrets`. Each wired container also gets `GOOGLE_CLOUD_PROJECT` (otherwise ADC
with an external account asks Resource Manager for the project) and `dependsOn` the credential shim
with condition HEALTHY; the task gets `taskRoleArn` and the shim container. No `secrets` entry, no
key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gcpfargate.credentials import wiring
from gcpfargate.errors import TemplateError
from gcpfargate.image import shim_image

PROJECT_VARIABLE = "GOOGLE_CLOUD_PROJECT"


def wire_keyless(
    definition: Mapping[str, Any],
    *,
    credential_config: Mapping[str, Any],
    credentials_env: str,
    credentials_path: str,
    containers: Sequence[str] | None,
    image_config: wiring.ImageConfig,
    task_role_arn: str,
    shim_image_ref: str,
    project: str,
    image: str | None = None,
    image_user: wiring.ImageUser = wiring.no_user,
) -> dict[str, Any]:
    wiring.check_environment(definition, credentials_env)
    wired = copy.deepcopy(dict(definition))
    if wired.get("taskRoleArn") not in (None, "", task_role_arn):
        raise TemplateError(
            f"the template sets taskRoleArn {wired['taskRoleArn']}, but keyless mode federates "
            f"the task role {task_role_arn}",
            "Remove taskRoleArn from the template",
        )
    wired["taskRoleArn"] = task_role_arn
    script = wiring.wrapper_script(credentials_env, credentials_path)
    names = set(wiring.target_names(wired, containers, image))
    config_text = json.dumps(dict(credential_config), separators=(",", ":"), sort_keys=True)
    others = [
        c
        for c in wired.get("containerDefinitions") or []
        if c.get("name") != shim_image.CONTAINER_NAME
    ]
    for container in others:
        if container.get("name") not in names:
            continue
        name = container.get("name")
        if any(s.get("name") == credentials_env for s in container.get("secrets") or []):
            raise TemplateError(
                f"container {name}: secrets sets {credentials_env}, which keyless mode delivers "
                "through environment",
                "Remove it from the template",
            )
        managed = {wiring.CREDENTIALS_VARIABLE: credentials_path, credentials_env: config_text}
        environment = [
            e for e in container.get("environment") or [] if e.get("name") not in managed
        ]
        for item in container.get("environment") or []:
            if (
                item.get("name") == wiring.CREDENTIALS_VARIABLE
                and item.get("value") != credentials_path
            ):
                raise TemplateError(
                    f"container {name}: environment sets {wiring.CREDENTIALS_VARIABLE} to "
                    f"{item.get('value')!r}, not task.credentials_path {credentials_path!r}",
                    "Remove it from the template, or change task.credentials_path",
                )
        if not any(e.get("name") == PROJECT_VARIABLE for e in environment):
            environment.append({"name": PROJECT_VARIABLE, "value": project})
        container["environment"] = [
            *environment,
            *({"name": k, "value": v} for k, v in managed.items()),
        ]
        depends = [
            d
            for d in container.get("dependsOn") or []
            if d.get("containerName") != shim_image.CONTAINER_NAME
        ]
        container["dependsOn"] = [
            *depends,
            {"containerName": shim_image.CONTAINER_NAME, "condition": "HEALTHY"},
        ]
        wiring.wrap_program(container, script, image_config)
        wiring.add_credentials_tmpfs(container, credentials_path, image_user)
    shim = shim_image.container_definition(shim_image_ref)
    # The shim logs where the first wired container logs (awslogs needs a stream prefix per
    # container).
    first = next((c for c in others if c.get("name") in names and c.get("logConfiguration")), None)
    if first is not None:
        shim["logConfiguration"] = copy.deepcopy(first["logConfiguration"])
    wired["containerDefinitions"] = [*others, shim]
    return wired
