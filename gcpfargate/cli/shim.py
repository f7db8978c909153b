"""`credential-shim`: the keyless sidecar's program, for running it where gcpfargate is installed.

The sidecar image does not install gcpfargate: it runs the stdlib-only `gcpfargate.shim` package as
`python3 -m shim`. This command is the same program with the same options (argparse parses them:
`gcpfargate credential-shim --help`), for local rehearsals and debugging.
"""

from __future__ import annotations

import typer

from gcpfargate.cli.app import app


@app.command(
    "credential-shim",
    # The keyless sidecar's own program: internal, so not listed in the top-level help.
    hidden=True,
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def credential_shim(ctx: typer.Context) -> None:
    """Serve the ECS task role's credentials to google-auth on 127.0.0.1 (the keyless-mode sidecar)."""
    from gcpfargate.shim.server import main

    raise typer.Exit(main(ctx.args))
