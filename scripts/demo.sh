#!/usr/bin/env bash
# The demo: the user's real job, end to end, against the local stack started by `make demo`
# (tests/stack/local.py sets AWS_ENDPOINT_URL, DOCKER_HOST, GCPFARGATE_ECR_REGISTRY, IAM_EMULATOR_HOST).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
gcpfargate=$here/.venv/bin/gcpfargate
start=$(date +%s)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/7 base image: a Python-capable image built locally (no image can be pulled here)"
bash "$here/scripts/base-image.sh"

work=$(mktemp -d /tmp/gcpfargate-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
say "2/7 gcpfargate init: scaffold a project in $work, then add the sample job (examples/demo)"
"$gcpfargate" init --gcp-project demo-project --service-account nightly-batch --family demo-nightly \
  --repository demo-nightly
# The emulator starts empty: let bootstrap create the account (a real project would already have it).
sed -i 's/^create_service_account = false/create_service_account = true/' gcpfargate.toml
# The sample template adds DEMO_API_URL (where the job's "GCP API" lives) to the scaffolded one.
cp "$here"/examples/demo/{task-definition.json.j2,Dockerfile,app.py} "$work/"
# ...which reads IAM_EMULATOR_HTTP with must_env(): templates may read only the variables listed.
sed -i 's/^env_vars = \[\]/env_vars = ["IAM_EMULATOR_HTTP"]/' gcpfargate.toml
grep -q '^env_vars = \["IAM_EMULATOR_HTTP"\]' gcpfargate.toml || { echo "demo: no env_vars line to set"; exit 1; }
ls -1 "$work"

say "3/7 gcpfargate deploy  (bootstrap → push-image → register-task)"
"$gcpfargate" deploy

say "4/7 gcpfargate deploy again: nothing changed, so nothing is created"
"$gcpfargate" deploy --output json > deploy2.json
python3 - <<'PY'
import json
d = json.load(open("deploy2.json"))
print({step: d[step].get("changed") for step in d})
assert not any(d[step].get("changed") for step in d), "second deploy changed something"
PY

say "5/7 gcpfargate run-local --network host  (the Fargate start, rehearsed on the local engine)"
"$gcpfargate" run-local --network host

"$gcpfargate" doctor || true

keys() { curl -s --noproxy '*' "$IAM_EMULATOR_HTTP/admin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_minted"])'; }
say "6/7 keyless mode: the same job, no key (workload identity federation from the task role)"
bash "$here/scripts/keyless-base-image.sh"
keyless=$(mktemp -d /tmp/gcpfargate-keyless.XXXXXX)
trap 'rm -rf "$work" "$keyless"' EXIT
cp "$work"/{gcpfargate.toml,task-definition.json.j2,app.py,Dockerfile} "$keyless/"
cd "$keyless"
# The same project in keyless mode; the image's base carries google-auth 2.x (bookworm's 1.5.1 is too old).
sed -i 's/^auth = "key"/auth = "keyless"/; s/demo-nightly/demo-keyless/g' gcpfargate.toml
grep -q '^auth = "keyless"' gcpfargate.toml || { echo "demo: gcpfargate.toml has no auth line to switch"; exit 1; }
sed -i 's/python-base:bookworm$/python-base:bookworm-google-auth2/' Dockerfile
export GCPFARGATE_IMAGE_SHIM_BASE_IMAGE=gcpfargate-demo/python-base:bookworm
# run-local assumes the task role as you: opt in to a trust statement for your own identity
# (the stack's moto answers every test key as user/moto, and names it in sts, not iam as AWS does).
account=$("$here/.venv/bin/python" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])')
export GCPFARGATE_GCP_LOCAL_PRINCIPAL="arn:aws:iam::$account:user/moto"
before=$(keys)
"$gcpfargate" deploy

say "7/7 gcpfargate run-local --network host  (task role -> credential shim -> STS -> service account)"
"$gcpfargate" run-local --network host
after=$(keys)
echo "keys created by the emulator during the keyless run: $(( after - before ))"
[ "$after" -eq "$before" ] || { echo "keyless mode created a key"; exit 1; }
"$gcpfargate" doctor || true
say "demo finished in $(( $(date +%s) - start ))s: key mode (key stored, job authenticated) and keyless mode (no key, job authenticated)"
