"""The examples that end each command's `--help`, in one place so a test can run every one of them
through the parser (an example that no longer parses fails the suite, not a newcomer)."""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "init": (
        "gcpfargate init                     # asks on a terminal",
        "gcpfargate init --gcp-project my-project-123 --service-account deployer --auth keyless",
        "gcpfargate init --from-family nightly-job   # import a registered task definition",
    ),
    "deploy": (
        "gcpfargate deploy",
        "gcpfargate deploy --dry-run         # what would change, nothing written",
        "gcpfargate deploy --service web --cluster prod --wait-timeout 3600",
    ),
    "bootstrap": (
        "gcpfargate bootstrap",
        "gcpfargate bootstrap --new-key --dry-run",
    ),
    "push-image": (
        "gcpfargate push-image",
        "gcpfargate push-image --tag v1.2.0",
    ),
    "register-task": (
        "gcpfargate register-task",
        "gcpfargate register-task --dry-run",
    ),
    "render": (
        "gcpfargate render",
        "gcpfargate render --template task-definition.json.j2 > definition.json",
    ),
    "diff": (
        "gcpfargate diff                     # exit 1 when the template changed",
        "gcpfargate diff -o json",
    ),
    "run-local": (
        "gcpfargate run-local",
        "gcpfargate run-local --build             # your local code: nothing pushed or registered",
        "gcpfargate run-local --command 'python main.py --dry-run'",
    ),
    "run": (
        "gcpfargate run                      # waits, streams the logs, exits with the task's code",
        "gcpfargate run --command 'manage.py migrate' --cpu 1024 --memory 2048",
        "gcpfargate run --job cleanup         # a [jobs.cleanup] now, with its overrides",
    ),
    "jobs": (
        "gcpfargate jobs                     # every job: next runs and last runs",
        "gcpfargate jobs --job export-daily --last 10 -o json",
    ),
    "logs": (
        "gcpfargate logs --since 10m",
        "gcpfargate logs --job export-daily --follow    # Ctrl-C stops",
    ),
    "schedule": (
        'gcpfargate schedule --cron "0 3 * * *" --timezone Asia/Tokyo',
        "gcpfargate schedule --dry-run        # with [jobs.*]: create/update/unchanged per job",
        "gcpfargate schedule --prune --yes    # also delete the schedules no job names any more",
    ),
    "doctor": (
        "gcpfargate doctor                   # exit 3 when a check fails",
        "gcpfargate doctor -o json --no-get-secret",
    ),
    "rotate-key": (
        "gcpfargate rotate-key",
        "gcpfargate rotate-key --revoke-previous   # a leaked key",
        "gcpfargate rotate-key --prune --yes",
    ),
    "prune-keys": (
        "gcpfargate prune-keys --dry-run",
        "gcpfargate prune-keys --yes",
    ),
    "rollback": (
        "gcpfargate rollback",
        "gcpfargate rollback --revision 12 --service web --cluster prod",
    ),
    "deregister": (
        "gcpfargate deregister --keep-last 5 --dry-run",
        "gcpfargate deregister --keep-last 5 --images --yes",
    ),
}


def epilog(command: str) -> str | None:
    """The `Examples:` block for `command`; click keeps a paragraph after a \\b line unwrapped."""
    lines = EXAMPLES.get(command)
    if not lines:
        return None
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
