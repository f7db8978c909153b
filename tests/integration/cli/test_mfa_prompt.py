"""An AWS profile with `role_arn` and `mfa_serial` on a real terminal: botocore's MFA prompt is
asked first, before any step's spinner, and once per role session, which is kept where the AWS CLI
keeps it (~/.aws/cli/cache) so the next command asks nothing."""

from __future__ import annotations

import json
import os
import sys
import time

from tests.conftest import Project
from tests.integration.helpers import Terminal, configure_image
from tests.stack.images import write_busybox_context

MFA_SERIAL = "arn:aws:iam::123456789012:mfa/deployer-phone"
PROMPT = f"Enter MFA code for {MFA_SERIAL}: "


def _mfa_profile(project: Project) -> dict[str, str]:
    role = f"deployer-{project.family}"
    project.aws("iam").create_role(
        RoleName=role,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
                    }
                ],
            }
        ),
    )
    config = project.dir.parent / f"{project.dir.name}.aws-config"
    config.write_text(
        "[profile base]\naws_access_key_id = testing\naws_secret_access_key = testing\n\n"
        f"[profile deployer]\nrole_arn = arn:aws:iam::123456789012:role/{role}\n"
        f"source_profile = base\nmfa_serial = {MFA_SERIAL}\n"
    )
    env = {
        k: v
        for k, v in project.env.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "CI")
    }
    return {**env, "AWS_CONFIG_FILE": str(config), "TERM": "xterm", "COLUMNS": "120"}


def test_the_mfa_prompt_comes_first_and_once_per_cached_session(project: Project) -> None:
    configure_image(project, tag="v1")
    write_busybox_context(project.dir)
    env = _mfa_profile(project)
    command = [sys.executable, "-m", "gcpfargate", "--profile", "deployer", "push-image"]

    first = Terminal([*command, "--dry-run"], project.dir, env)
    first.expect(PROMPT)
    # Nothing drew before the prompt: the credentials are resolved before the first step.
    assert "Searching" not in first.before and "Building" not in first.before, first.before
    os.write(first.master, b"123456\r")
    code, rest = first.finish()
    assert code == 0, rest
    assert "create ECR repository" in rest or "build " in rest, rest

    cache = project.dir / ".home" / ".aws" / "cli" / "cache"
    cached = list(cache.glob("*.json"))
    assert len(cached) == 1, cached
    assert json.loads(cached[0].read_text())["Credentials"]["AccessKeyId"]

    second = Terminal([*command, "--dry-run"], project.dir, env)
    code, rest = finish_within(second, 60)
    assert code == 0, rest
    assert "MFA" not in rest, rest


def finish_within(term: Terminal, seconds: float) -> tuple[int, str]:
    """The exit code and output; a process still running after `seconds` (waiting for an MFA code
    nobody types) is killed and fails the test."""
    deadline = time.monotonic() + seconds
    output = term.seen
    while term.process.poll() is None:
        if time.monotonic() > deadline:
            term.process.kill()
            term.process.wait(timeout=10)
            raise AssertionError(f"still running after {seconds:g} s: {output!r}")
        output += term._read(0.5)
    while chunk := term._read(0.5):
        output += chunk
    os.close(term.master)
    return term.process.wait(timeout=10), output
