#!/usr/bin/env bash
# The demo: the user's real job, end to end, against the local stack started by `make demo`
# (tests/stack/local.py sets AWS_ENDPOINT_URL, DOCKER_HOST, GCPFARGATE_ECR_REGISTRY, IAM_EMULATOR_HOST).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
gcpfargate=$here/.venv/bin/gcpfargate
start=$(date +%s)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/5 base image: a Python-capable image built locally (no image can be pulled here)"
bash "$here/scripts/base-image.sh"

work=$(mktemp -d /tmp/gcpfargate-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
say "2/5 gcpfargate init: scaffold a project in $work, then add the sample job (examples/demo)"
"$gcpfargate" init --gcp-project demo-project --service-account nightly-batch --family demo-nightly \
  --repository demo-nightly
# The emulator starts empty: let bootstrap create the account (a real project would already have it).
sed -i 's/^create_service_account = false/create_service_account = true/' gcpfargate.toml
# The sample template adds DEMO_API_URL (where the job's "GCP API" lives) to the scaffolded one.
cp "$here"/examples/demo/{task-definition.json.j2,Dockerfile,app.py} "$work/"
ls -1 "$work"

say "3/5 gcpfargate deploy  (bootstrap → push-image → register-task)"
"$gcpfargate" deploy

say "4/5 gcpfargate deploy again: nothing changed, so nothing is created"
"$gcpfargate" deploy --output json > deploy2.json
python3 - <<'PY'
import json
d = json.load(open("deploy2.json"))
print({step: d[step].get("changed") for step in d})
assert not any(d[step].get("changed") for step in d), "second deploy changed something"
PY

say "5/5 gcpfargate run-local --network host  (the Fargate start, rehearsed on the local engine)"
"$gcpfargate" run-local --network host

"$gcpfargate" doctor || true
say "demo finished in $(( $(date +%s) - start ))s: key created and stored, image pushed, task registered, job authenticated to the GCP API"
