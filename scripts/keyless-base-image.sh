#!/usr/bin/env bash
# The demo base image with google-auth 2.x, for keyless mode: Debian bookworm ships google-auth 1.5.1,
# which predates external_account credentials (README "Keyless", limits). Built from this machine's
# installed packages (the same Python 3.11 on glibc), so it needs no network. Idempotent.
set -euo pipefail
IMAGE=${KEYLESS_BASE_IMAGE:-gcpfargate-demo/python-base:bookworm-google-auth2}
BASE=${DEMO_BASE_IMAGE:-gcpfargate-demo/python-base:bookworm}
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
site=$("$PY" -c 'import google.auth, pathlib; print(pathlib.Path(google.auth.__file__).parents[2])')
mkdir -p "$context/site/google"
cp -r "$site/google/auth" "$site/google/oauth2" "$context/site/google/"
# google-auth 2.x imports cryptography, which wants cffi.
cp -r "$site/cryptography" "$site/cffi" "$site/pycparser" "$site"/_cffi_backend*.so "$context/site/"
find "$context" -name __pycache__ -prune -exec rm -rf {} +
cat > "$context/Dockerfile" <<DOCKERFILE
FROM $BASE
RUN rm -rf /usr/lib/python3/dist-packages/google/auth /usr/lib/python3/dist-packages/google/oauth2
COPY site /usr/lib/python3/dist-packages/
DOCKERFILE
docker build -q -t "$IMAGE" "$context" >/dev/null
echo "base image: built $IMAGE (google-auth $("$PY" -c 'import google.auth; print(google.auth.__version__)'))"
