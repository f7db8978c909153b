#!/usr/bin/env bash
# A Python-capable base image for the demo, built locally: no base image can be pulled here.
# debootstrap (minbase, bookworm) with python3, python3-google-auth and python3-requests, packed
# once into a tarball under the user's cache and `docker import`ed into the engine at DOCKER_HOST.
# Later runs reuse the tarball (and the engine's copy when it already has the image).
set -euo pipefail
IMAGE=${DEMO_BASE_IMAGE:-gcpfargate-demo/python-base:bookworm}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/gcpfargate
TARBALL=$CACHE/python-base-bookworm.tar
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image: $IMAGE already in the engine"
  exit 0
fi
mkdir -p "$CACHE"
# One builder at a time: the test suite's workers (one engine each) may all ask for the base at once,
# and the first one's tarball serves the others.
exec 9>"$CACHE/python-base.lock"
flock 9
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  mkdir -p "$CACHE"
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "base image: debootstrap bookworm (minbase + python3, google-auth, requests); takes ~2 minutes once"
  start=$(date +%s)
  debootstrap --variant=minbase --include=python3,python3-google-auth,python3-requests \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log"; echo "debootstrap failed (log: $CACHE/debootstrap.log)"; exit 1; }
  # Trim what a batch job never reads: docs, manuals, locales, apt caches.
  rm -rf "$root"/usr/share/{doc,man,info,locale} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  echo "base image: rootfs packed in $(( $(date +%s) - start ))s -> $TARBALL"
fi
docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' "$TARBALL" "$IMAGE" >/dev/null
echo "base image: imported $IMAGE from $TARBALL"
