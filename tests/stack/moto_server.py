"""moto's own server, started as `python -m tests.stack.moto_server`, with one per-request cost
removed.

moto finds the service of each request by listing its package directory (~190 entries, an isdir
each: moto/backends.py `list_of_moto_modules`, called from moto_server/werkzeug_app.py
`get_backend_for_host`): about a quarter of moto's CPU in the suite (py-spy of a suite run). The
directory cannot change while the server runs, so it is listed once. Nothing moto answers changes.
"""

from __future__ import annotations

import sys


def list_modules_once() -> None:
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: iter(modules)  # type: ignore[assignment]


if __name__ == "__main__":
    list_modules_once()
    from moto.server import main

    main(sys.argv[1:])
