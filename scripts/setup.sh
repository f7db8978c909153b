#!/usr/bin/env bash
# Everything `make demo` and `make test` need on a fresh Debian machine (run as root).
# Idempotent: installs only what is missing, so a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)  # static: usable FROM scratch
command -v dash >/dev/null 2>&1 || need+=(dash)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v git >/dev/null 2>&1 || need+=(git)
command -v podman >/dev/null 2>&1 || need+=(podman)  # tests/integration/test_podman.py
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: installing gcpfargate and test dependencies into .venv"
  log=.venv/pip-install.log
  # uv (itself from PyPI) resolves the same versions as pip and installs them in ~20 s where pip takes
  # ~90 s: a third of `make test`'s set-up on a fresh clone (docs/development.md). --compile-bytecode
  # because pip compiles what it installs and this machine's PYTHONDONTWRITEBYTECODE means nothing
  # would cache it later: every process would compile botocore again. pip stays the fallback where
  # uv cannot be fetched or cannot reach the index (uv does not read pip.conf).
  if ! { .venv/bin/python -m pip install -q uv \
           && .venv/bin/python -m uv pip install -q --compile-bytecode --python .venv/bin/python -e '.[test]'; } \
      >"$log" 2>&1; then
    echo "setup: uv could not install (log: $log); installing with pip"
    if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]'; } \
        >>"$log" 2>&1; then
      tail -20 "$log"; echo "setup: pip install failed (full log: $log)"; exit 1
    fi
  fi
  .venv/bin/python -c "import gcpfargate, moto, grpc"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# An editable install compiles nothing, and where PYTHONDONTWRITEBYTECODE is set (this machine's image
# sets it) Python never caches gcpfargate's bytecode either: every command would compile its modules
# again, about 0.1 s of each run (issue 18). Up-to-date files are skipped, so a rerun costs nothing.
.venv/bin/python -m compileall -q gcpfargate
