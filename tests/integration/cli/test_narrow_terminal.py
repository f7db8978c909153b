"""Output on an 80-column terminal and off a terminal (issue 17 item 8).

On a terminal (the real CLI in a pseudo-terminal, COLUMNS=80) long text wraps at spaces: every fix
hint is there in full and no ARN or image reference is split across lines. Off a terminal (a pipe,
as in CI logs) the same results are plain lines without box drawing.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import sys

from tests.conftest import Project
from tests.integration.helpers import (
    deploy,
    latest,
    prepare,
    prepare_schedule,
    remove_role_permission,
)

BOX = re.compile("[\u2500-\u257f]")  # the Unicode box-drawing block: table borders and tree guides
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_pty(project: Project, *args: str, columns: int = 80) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal of `columns` columns; its exit code
    and screen text."""
    env = {**project.env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    env.pop("CI", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, on the terminal
        os.chdir(project.dir)
        os.execve(sys.executable, [sys.executable, "-m", "gcpfargate", *args], env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError as exc:  # EIO: the child closed the terminal
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    text = ESCAPES.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")
    # Spinners redraw in place: keep what stayed on screen after each carriage return.
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    return os.waitstatus_to_exitcode(status), "\n".join(lines)


def _fits(text: str, columns: int, start: str = "") -> list[str]:
    """Lines of the result (from `start` on) wider than the terminal though they could have been
    wrapped.

    A line may be wider only when it ends in one unbreakable token (an ARN, a digest) that cannot
    fit beside its label: the terminal folds that on screen, and a copy-paste still gets it whole.
    """
    result = text[text.index(start) :] if start else text
    return [
        line
        for line in result.splitlines()
        if len(line) > columns and len(line.split()[-1]) < columns - 25
    ]


def test_deploy_and_doctor_at_80_columns_wrap_without_splitting_arns(project: Project) -> None:
    prepare(project)
    first = deploy(project)
    code, screen = in_pty(project, "deploy")
    assert code == 0, screen
    definition = latest(project)
    for whole in (
        definition["taskDefinitionArn"],
        first["bootstrap"]["secret_arn"],
        definition["containerDefinitions"][0]["image"],
    ):
        assert whole in screen, screen
    assert _fits(screen, 80, "gcpfargate deploy") == [], screen

    remove_role_permission(project)
    doctor = project.run("doctor", "--output", "json")
    failed = next(check for check in doctor.json["checks"] if check["status"] == "FAIL")
    code, screen = in_pty(project, "doctor")
    assert code == 3, screen
    # The whole detail with its fix hint is on screen, word for word, only the line breaks differ.
    assert failed["detail"].split() == _words_after(
        screen, failed["name"] + ":", len(failed["detail"].split())
    )
    assert _fits(screen, 80, "gcpfargate doctor") == [], screen


def _words_after(screen: str, marker: str, count: int) -> list[str]:
    words = " ".join(screen.split()).split(marker, 1)[1].split()
    return words[:count]


def test_off_a_terminal_results_are_plain_lines(project: Project) -> None:
    prepare(project)
    deploy(project)
    for args in (("deploy",), ("doctor",)):
        result = project.run(*args)
        assert result.returncode == 0, result.output
        assert BOX.findall(result.stdout) == [], result.stdout
    arn = latest(project)["taskDefinitionArn"]
    shown = project.run("deploy")
    # The step's line, whole (the run history's line follows it).
    assert f"register-task: changed no, {arn}" in [
        line.strip() for line in shown.stdout.splitlines()
    ]


def test_schedule_at_80_columns_shows_every_arn_whole(project: Project) -> None:
    arns = prepare_schedule(project)
    created = project.run("schedule", "--cron", "0 3 * * ? *", "--output", "json")
    assert created.returncode == 0, created.output
    code, screen = in_pty(project, "schedule", "--show")
    assert code == 0, screen
    for whole in (
        created.json["schedule_arn"],
        arns["family_arn"],
        f"role/gcpfargate-{project.family}-scheduler",
    ):
        assert whole in screen, screen
    assert _fits(screen, 80) == [], screen
    plain = project.run("schedule", "--show")
    assert (
        BOX.findall(plain.stdout) == [] and f"arn: {created.json['schedule_arn']}" in plain.stdout
    )
