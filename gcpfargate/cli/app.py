"""The Typer application and the global options every command shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from gcpfargate import __version__

if TYPE_CHECKING:
    from gcpfargate.config import Overrides, Settings
    from gcpfargate.console import Output
    from gcpfargate.core.context import Context

# `--help` lists commands in the order a user meets them, not in the order the modules register
# them; a command missing here (added by another module) follows, in registration order.
COMMAND_ORDER = (
    "init",
    "deploy",
    "bootstrap",
    "push-image",
    "register-task",
    "render",
    "diff",
    "run-local",
    "run",
    "schedule",
    "jobs",
    "logs",
    "doctor",
    "rotate-key",
    "prune-keys",
    "rollback",
    "deregister",
    "credential-shim",
)


class OrderedGroup(TyperGroup):
    def list_commands(self, ctx: object) -> list[str]:
        names = list(self.commands)
        rank = {name: index for index, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), names.index(name)))


app = typer.Typer(
    name="gcpfargate",
    cls=OrderedGroup,
    help="Deploy containers to Amazon ECS Fargate that act as a Google Cloud service account: with "
    "a key (kept in Secrets Manager, rotated) or keyless (workload identity federation from the "
    "task role, no key anywhere). Identity, image and task definition in one safe, idempotent "
    "command.\n\nStart with `gcpfargate init`, then `gcpfargate deploy`; `gcpfargate doctor` "
    "checks it all.",
    no_args_is_help=True,
    # Locals can hold key material: never show them, whatever the user's environment says.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


@dataclass
class State:
    """Global options, shared by every command through `typer.Context.obj`."""

    config: str | None = None
    region: str | None = None
    profile: str | None = None
    environment: str | None = None
    output: str = "text"
    strict: bool = False
    verbose: bool = False
    debug: bool = False
    _console: Output | None = field(default=None, repr=False)

    @property
    def console(self) -> Output:
        if self._console is None:
            from gcpfargate.console import Output

            self._console = Output(self.output, verbose=self.verbose, debug=self.debug)
        return self._console

    def settings(self, overrides: Overrides | None = None, read_file: bool = True) -> Settings:
        """Settings with the global flags and this command's `overrides` on top (None: not
        given)."""
        from gcpfargate.config import load_settings

        flags: Overrides = {
            "aws.region": self.region,
            "aws.profile": self.profile,
            **(overrides or {}),
        }
        return load_settings(
            self.config, overrides=flags, read_file=read_file, environment=self.environment
        )

    def context(
        self, dry_run: bool = False, overrides: Overrides | None = None, read_file: bool = True
    ) -> Context:
        from gcpfargate.clients.aws import profile_prompts_for_mfa
        from gcpfargate.core.context import Context
        from gcpfargate.core.plan import Plan

        # The plan/apply boundary: a dry run previews the plan the same code computes for apply.
        context = Context(
            settings=self.settings(overrides, read_file),
            reporter=self.console,
            plan=Plan(apply=not dry_run),
        )
        if profile_prompts_for_mfa(context.settings.aws.profile):
            # The MFA prompt comes first, before any spinner or background read could hide it.
            context.aws.resolve_credentials()
        return context


STATE = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gcpfargate {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="Config file (default ./gcpfargate.toml; env GCPFARGATE_CONFIG).",
            show_default=False,
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            metavar="REGION",
            show_default=False,
            help="AWS region (beats the config file).",
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", metavar="NAME", show_default=False, help="AWS profile."),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            metavar="NAME",
            show_default=False,
            help="Apply [environments.NAME] of the config (env GCPFARGATE_ENVIRONMENT).",
        ),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output", "-o", metavar="FORMAT", help="text or json (json: one object on stdout)."
        ),
    ] = OutputFormat.text,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when the command printed any warning.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say more about each step.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks; key material stays redacted.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    STATE.config, STATE.region, STATE.profile = config, region, profile
    STATE.environment = environment
    STATE.output, STATE.verbose, STATE.debug, STATE.strict = output.value, verbose, debug, strict
    STATE._console = None


DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]

# Per-run overrides shared by `run`, `run-local` and `schedule` (see core/overrides.py).
Command = Annotated[
    str | None,
    typer.Option(
        "--command",
        metavar="COMMAND",
        show_default=False,
        help="Replace the container's command (CMD), split like a shell would: --command "
        '"manage.py migrate".',
    ),
]
Arg = Annotated[
    list[str] | None,
    typer.Option(
        "--arg",
        metavar="WORD",
        show_default=False,
        help="One word of the replacement command; repeat for each.",
    ),
]
Env = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        metavar="NAME=VALUE",
        show_default=False,
        help="Set an environment variable; repeat for several.",
    ),
]
Cpu = Annotated[
    str | None,
    typer.Option(
        "--cpu",
        metavar="UNITS",
        show_default=False,
        help='Task cpu for this run (256, 512, 1024, … or "1 vCPU").',
    ),
]
Memory = Annotated[
    str | None,
    typer.Option(
        "--memory",
        metavar="MIB",
        show_default=False,
        help='Task memory for this run in MiB (or "2 GB").',
    ),
]
