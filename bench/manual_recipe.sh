#!/usr/bin/env bash
# The article's recipe (seed/SUMMARY.md), scripted as a user would type it, doing the same job as
# `gcpfargate deploy`. Modes:
#   first   key → create-secret → execution role (trust, managed policy, read the secret) →
#           ECR repository → login, build, tag, push → log group → register the task definition
#   rerun   the recipe run again, as a deploy script does on every change: a new key →
#           put-secret-value → login, build, tag, push → register (a new revision every time)
#   image   only the image half: login, build, tag, push → register
# Inputs (environment): SA_EMAIL SECRET_NAME ROLE_NAME REPO FAMILY CONTEXT TAG TASKDEF_TEMPLATE (a task
# definition with __FAMILY__ __IMAGE__ __SECRET_ARN__ __ROLE_ARN__ placeholders); for rerun and image
# also SECRET_ARN and ROLE_ARN (a user keeps them in their task-definition file). The stack's
# AWS_ENDPOINT_URL, DOCKER_HOST, GCPFARGATE_ECR_REGISTRY and IAM_EMULATOR_HOST point every tool at the
# local stack. The key goes from the IAM API to Secrets Manager through a pipe, never to the disk.
# Prints secret_arn=, role_arn= and task_definition_arn= lines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:-}
case "$mode" in first|rerun|image) ;; *) echo "usage: manual_recipe.sh first|rerun|image" >&2; exit 2 ;; esac
aws=${AWS_CLI:-aws}
python=${PYTHON:-python3}
registry=$GCPFARGATE_ECR_REGISTRY
# docker login writes credentials to $DOCKER_CONFIG/config.json: keep them out of the real ~/.docker.
if [ -z "${DOCKER_CONFIG:-}" ]; then
  DOCKER_CONFIG=$(mktemp -d)
  trap 'rm -rf "$DOCKER_CONFIG"' EXIT
fi
export DOCKER_CONFIG

if [ "$mode" = first ]; then
  # 1-2. key → Secrets Manager
  SECRET_ARN=$("$python" "$here/create_key.py" "$SA_EMAIL" |
    "$aws" secretsmanager create-secret --name "$SECRET_NAME" --secret-string file:///dev/stdin \
      --query ARN --output text)
  # The execution role the article forgets: trust ECS tasks, the managed policy, read this secret.
  ROLE_ARN=$("$aws" iam create-role --role-name "$ROLE_NAME" --query Role.Arn --output text \
    --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
  "$aws" iam attach-role-policy --role-name "$ROLE_NAME" \
    --policy-arn arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy
  "$aws" iam put-role-policy --role-name "$ROLE_NAME" --policy-name read-gcp-key --policy-document \
    "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"secretsmanager:GetSecretValue\",\"Resource\":\"$SECRET_ARN\"}]}"
  "$aws" ecr create-repository --repository-name "$REPO" --image-scanning-configuration scanOnPush=true >/dev/null
  "$aws" logs create-log-group --log-group-name "/ecs/$FAMILY"
else
  : "${SECRET_ARN:?}" "${ROLE_ARN:?}"
  if [ "$mode" = rerun ]; then
    "$python" "$here/create_key.py" "$SA_EMAIL" |
      "$aws" secretsmanager put-secret-value --secret-id "$SECRET_ARN" --secret-string file:///dev/stdin >/dev/null
  fi
fi

# 3. image
"$aws" ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null
docker build -q --platform linux/amd64 -t "$REPO:$TAG" "$CONTEXT" >/dev/null
docker tag "$REPO:$TAG" "$registry/$REPO:$TAG"
docker push -q "$registry/$REPO:$TAG" >/dev/null

# 4. task definition
definition=$(mktemp)
sed -e "s|__FAMILY__|$FAMILY|g" -e "s|__IMAGE__|$registry/$REPO:$TAG|g" -e "s|__SECRET_ARN__|$SECRET_ARN|g" \
    -e "s|__ROLE_ARN__|$ROLE_ARN|g" "$TASKDEF_TEMPLATE" > "$definition"
# ECS refuses a role IAM changed a moment ago (iam:PassRole, for a few seconds): as any script
# that creates the role and registers at once must, retry after a second.
for attempt in 1 2 3 4 5; do
  if arn=$("$aws" ecs register-task-definition --cli-input-json "file://$definition" \
      --query taskDefinition.taskDefinitionArn --output text 2>"$definition.err"); then
    break
  fi
  grep -q PassRole "$definition.err" && [ "$attempt" -lt 5 ] || { cat "$definition.err" >&2; exit 1; }
  sleep 1
done
rm -f "$definition.err"
rm -f "$definition"
printf 'secret_arn=%s\nrole_arn=%s\ntask_definition_arn=%s\n' "$SECRET_ARN" "$ROLE_ARN" "$arn"
