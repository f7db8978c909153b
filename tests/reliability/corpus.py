"""The bad-input corpus, as data: each case is an input a user can get wrong and what must happen.

Add a case by appending a `Case` and its reason fragments to `WHY` (why the input is wrong, in
the product's words: naming the setting is not enough, the line must say what is wrong with it).
`files` are written into the project directory (a `None` value
deletes the file), `env` is added to the environment, `args` is the command line. Every case must
end with exit code 1 or 2, one clear line naming the input, no traceback and no change anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE = """
[gcp]
project = "{project}"
service_account = "{account}"

[task]
family = "{family}"
"""


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    names: tuple[str, ...]  # fragments the error line must contain (what input was wrong)
    config: str | None = BASE  # None: no gcpfargate.toml at all
    extra_config: str = ""
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: str = ""  # name of a setup action in test_bad_inputs.py


BOOT = ("bootstrap",)

CASES: list[Case] = [
    # -- configuration -------------------------------------------------------------------------
    Case(
        "config-missing",
        BOOT,
        2,
        ("gcp.project", "gcp.service_account", "task.family"),
        config=None,
    ),
    Case(
        "config-path-missing",
        ("--config", "nope.toml", "bootstrap"),
        2,
        ("nope.toml", "does not exist"),
    ),
    Case(
        "config-malformed",
        BOOT,
        2,
        ("cannot parse", "gcpfargate.toml"),
        config="[gcp\nproject = 1\n",
    ),
    Case(
        "config-not-utf8",
        BOOT,
        2,
        ("cannot read", "gcpfargate.toml"),
        config=None,
        files={"gcpfargate.toml": b"\xff\xfe[gcp]\n"},
    ),
    Case(
        "config-unknown-section",
        BOOT,
        2,
        ("unknown section [gpc]",),
        extra_config='[gpc]\nproject = "x"\n',
    ),
    Case(
        "config-unknown-key",
        BOOT,
        2,
        ("unknown key secret.nmae", "did you mean name"),
        extra_config='[secret]\nnmae = "x"\n',
    ),
    Case(
        "config-section-not-table",
        BOOT,
        2,
        ("image", "must be a table"),
        config='image = "x"\n' + BASE,
    ),
    Case(
        "config-bool-type",
        BOOT,
        2,
        ("gcp.create_service_account", "true or false"),
        config=BASE.replace("[task]", 'create_service_account = "yes"\n[task]'),
    ),
    Case(
        "config-list-type",
        BOOT,
        2,
        ("task.containers", "list of strings"),
        config=BASE + 'containers = "app"\n',
    ),
    Case(
        "config-int-type",
        BOOT,
        2,
        ("run.wait_timeout", "whole number"),
        extra_config='[run]\nwait_timeout = "soon"\n',
    ),
    Case("config-table-type", BOOT, 2, ("task.vars", "table"), config=BASE + 'vars = ["a"]\n'),
    Case(
        "env-bool",
        BOOT,
        2,
        ("GCPFARGATE_GCP_CREATE_SERVICE_ACCOUNT", "true or false"),
        env={"GCPFARGATE_GCP_CREATE_SERVICE_ACCOUNT": "maybe"},
    ),
    Case(
        "env-int",
        BOOT,
        2,
        ("GCPFARGATE_RUN_WAIT_TIMEOUT", "whole number"),
        env={"GCPFARGATE_RUN_WAIT_TIMEOUT": "x"},
    ),
    Case(
        "env-unknown-key", BOOT, 2, ("GCPFARGATE_SECRET_NMAE",), env={"GCPFARGATE_SECRET_NMAE": "x"}
    ),
    Case("config-empty-file", BOOT, 2, ("gcp.project",), config=""),
    # -- identifiers ---------------------------------------------------------------------------
    Case("region-flag", ("--region", "mars-1", "bootstrap"), 2, ("aws.region", "mars-1")),
    Case(
        "region-env-case",
        BOOT,
        2,
        ("aws.region", "GCPFARGATE_AWS_REGION"),
        env={"GCPFARGATE_AWS_REGION": "US-EAST-1"},
    ),
    Case(
        "gcp-project-id",
        BOOT,
        2,
        ("gcp.project", "GCP project id"),
        env={"GCPFARGATE_GCP_PROJECT": "My_Project"},
    ),
    Case(
        "service-account-id",
        BOOT,
        2,
        ("gcp.service_account",),
        env={"GCPFARGATE_GCP_SERVICE_ACCOUNT": "ab"},
    ),
    Case(
        "role-arn-account",
        BOOT,
        2,
        ("task.execution_role_arn", "IAM role ARN"),
        env={"GCPFARGATE_TASK_EXECUTION_ROLE_ARN": "arn:aws:iam::12:role/x"},
    ),
    Case(
        "role-arn-service",
        BOOT,
        2,
        ("task.execution_role_arn",),
        env={"GCPFARGATE_TASK_EXECUTION_ROLE_ARN": "arn:aws:s3:::bucket"},
    ),
    Case("image-tag", ("push-image",), 2, ("image.tag",), env={"GCPFARGATE_IMAGE_TAG": "bad tag!"}),
    Case(
        "image-platform",
        ("push-image",),
        2,
        ("image.platform",),
        env={"GCPFARGATE_IMAGE_PLATFORM": "windows/amd64"},
    ),
    Case(
        "image-repository",
        ("push-image",),
        2,
        ("image.repository",),
        env={"GCPFARGATE_IMAGE_REPOSITORY": "UPPER"},
    ),
    Case("family-name", BOOT, 2, ("task.family",), env={"GCPFARGATE_TASK_FAMILY": "has space"}),
    Case("secret-name", BOOT, 2, ("secret.name",), env={"GCPFARGATE_SECRET_NAME": "bad name!"}),
    Case(
        "credentials-path",
        BOOT,
        2,
        ("task.credentials_path", "absolute"),
        env={"GCPFARGATE_TASK_CREDENTIALS_PATH": "creds.json"},
    ),
    Case(
        "credentials-env",
        BOOT,
        2,
        ("task.credentials_env",),
        env={"GCPFARGATE_TASK_CREDENTIALS_ENV": "1BAD"},
    ),
    Case("subnet-id", ("run",), 2, ("run.subnets",), env={"GCPFARGATE_RUN_SUBNETS": "net-1"}),
    Case(
        "security-group-id",
        ("run",),
        2,
        ("run.security_groups",),
        env={"GCPFARGATE_RUN_SECURITY_GROUPS": "sg-x"},
    ),
    Case(
        "schedule-timezone",
        ("schedule", "--rate", "1 hour"),
        2,
        ("Mars/Base",),
        env={"GCPFARGATE_SCHEDULE_TIMEZONE": "Mars/Base"},
    ),
    Case("schedule-cron", ("schedule", "--cron", "1 2 3"), 2, ("cron",)),
    # -- usage ---------------------------------------------------------------------------------
    Case("output-format", ("--output", "yaml", "bootstrap"), 2, ("--output", "yaml")),
    Case("unknown-option", ("bootstrap", "--bogus"), 2, ("--bogus",)),
    Case("unknown-command", ("bootstarp",), 2, ("bootstarp",)),
    Case("network-overlay", ("run-local", "--network", "overlay"), 2, ("--network overlay",)),
    Case(
        "rotate-exclusive",
        ("rotate-key", "--keep-previous", "--delete-previous"),
        2,
        ("exclude each other",),
    ),
    Case("rollback-no-service", ("rollback",), 2, ("service.name", "GCPFARGATE_SERVICE_NAME")),
    Case(
        "service-wait-not-bool",
        ("rollback",),
        2,
        ("GCPFARGATE_SERVICE_WAIT", "true or false"),
        env={"GCPFARGATE_SERVICE_WAIT": "maybe"},
    ),
    Case("deregister-keep-none", ("deregister", "--keep-last", "0", "--yes"), 2, ("--keep-last",)),
    Case(
        "deregister-unconfirmed",
        ("deregister", "--keep-last", "3"),
        2,
        ("needs confirmation", "--yes"),
    ),
    Case(
        "service-missing", ("rollback", "--service", "nope", "--cluster", "default"), 1, ("nope",)
    ),
    # -- environment ---------------------------------------------------------------------------
    # A missing credentials or profile configuration is a configuration error: exit 2 (issue 17 item
    # 14).
    Case("aws-no-credentials", BOOT, 2, ("no AWS credentials",), setup="no_aws_credentials"),
    Case("aws-endpoint-down", BOOT, 1, ("cannot reach the AWS endpoint",), setup="aws_down"),
    Case("aws-unknown-profile", ("--profile", "nope", "bootstrap"), 2, ("profile", "nope")),
    Case(
        "iam-endpoint-down",
        BOOT,
        1,
        ("IAM API", "unavailable"),
        env={"IAM_EMULATOR_HOST": "127.0.0.1:9"},
    ),
    Case(
        "engine-down",
        ("push-image",),
        1,
        ("Docker engine",),
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        files={"Dockerfile": "FROM scratch\n"},
    ),
    Case(
        "ecr-token-expired",
        ("push-image",),
        1,
        ("ExpiredTokenException",),
        setup="ecr_token_expired",
        files={"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"},
    ),
    # -- secrets -------------------------------------------------------------------------------
    Case(
        "secret-not-json",
        BOOT,
        2,
        ("not created by gcpfargate", "not JSON"),
        setup="secret_not_json",
    ),
    Case(
        "secret-not-a-key",
        BOOT,
        2,
        ("not created by gcpfargate", "not a service-account key"),
        setup="secret_not_a_key",
    ),
    Case(
        "secret-wrong-account",
        BOOT,
        2,
        ("not created by gcpfargate", "someone-else"),
        setup="secret_wrong_account",
    ),
    Case(
        "secret-wrong-account-rotate",
        ("rotate-key",),
        2,
        ("not created by gcpfargate",),
        setup="secret_wrong_account",
    ),
    # -- security hardening (issue 13 items 8, 9, 13, 14) --------------------------------------
    Case(
        "credentials-path-proc",
        BOOT,
        2,
        ("task.credentials_path", "system directory"),
        env={"GCPFARGATE_TASK_CREDENTIALS_PATH": "/proc/self/fd/1"},
    ),
    Case(
        "credentials-path-dotdot",
        BOOT,
        2,
        ("task.credentials_path", "normalised"),
        env={"GCPFARGATE_TASK_CREDENTIALS_PATH": "/tmp/../etc/passwd"},
    ),
    Case(
        "credentials-env-reserved",
        BOOT,
        2,
        ("task.credentials_env", "relies on"),
        env={"GCPFARGATE_TASK_CREDENTIALS_ENV": "GOOGLE_APPLICATION_CREDENTIALS"},
    ),
    Case(
        "config-deeply-nested",
        BOOT,
        2,
        ("cannot parse", "nest too deeply"),
        extra_config="[task.vars]\nx = " + "[" * 5000 + "]" * 5000 + "\n",
    ),
    Case(
        "config-path-directory",
        ("--config", ".", "bootstrap"),
        2,
        ("config file .", "is a directory"),
    ),
    Case(
        "config-path-fifo",
        ("--config", "fifo.toml", "bootstrap"),
        2,
        ("fifo.toml", "is a FIFO"),
        setup="fifo_config",
    ),
    Case(
        "image-context-root",
        ("push-image",),
        2,
        ("build context /", "root directory"),
        env={"GCPFARGATE_IMAGE_CONTEXT": "/"},
    ),
    *(
        Case(
            f"template-{name}",
            ("render", "--image", "busybox"),
            2,
            fragments,
            env={"GCPFARGATE_TASK_WIRE_CREDENTIALS": "false", **extra},
            files={
                "task-definition.json.j2": '{"family": {{ family | tojson }}, "x": ' + body + "}"
            },
        )
        for name, body, fragments, extra in [
            ("huge-number", "{{ 10**5000 }}", ("task-definition.json.j2:1", "too large"), {}),
            (
                "nested-loop",
                "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}1",
                ("loops more than",),
                {},
            ),
            (
                "rendered-too-large",
                '"{% for i in range(20000) %}{{ "x" * 100 }}{% endfor %}"',
                ("rendered template is larger",),
                {},
            ),
            (
                "aws-secret",
                '{{ env("AWS_SECRET_ACCESS_KEY") | tojson }}',
                ("AWS_SECRET_ACCESS_KEY", "refused"),
                {},
            ),
        ]
    ),
    Case(
        "template-device",
        ("render", "--image", "busybox"),
        2,
        ("/dev/zero", "not a regular file"),
        env={"GCPFARGATE_TASK_WIRE_CREDENTIALS": "false", "GCPFARGATE_TASK_TEMPLATE": "/dev/zero"},
    ),
]


# Why each input is wrong: fragments of the reason the error line must give (beside `names`).
WHY: dict[str, tuple[str, ...]] = {
    "config-missing": ("missing required settings",),
    "config-path-missing": ("Pass an existing file with --config",),
    "config-malformed": ("Expected ']'", "line 1, column 5"),
    "config-not-utf8": ("can't decode byte 0xff",),
    "config-unknown-section": ("unknown section", "did you mean gcp"),
    "config-unknown-key": ("unknown key",),
    "config-section-not-table": ("must be a table ([image])",),
    "config-bool-type": ("must be true or false, not str 'yes'",),
    "config-list-type": ("must be a list of strings, not str 'app'",),
    "config-int-type": ("must be a whole number, not str 'soon'",),
    "config-table-type": ("must be a table, not list",),
    "env-bool": ("must be true or false, not 'maybe'",),
    "env-int": ("must be a whole number, not 'x'",),
    "env-unknown-key": ("unknown setting", "did you mean GCPFARGATE_SECRET_NAME"),
    "config-empty-file": ("missing required settings",),
    "region-flag": ("not a valid AWS region name",),
    "region-env-case": ("'US-EAST-1'", "not a valid AWS region name"),
    "gcp-project-id": ("'My_Project'", "not a valid GCP project id"),
    "service-account-id": ("'ab'", "not a valid service account id"),
    "role-arn-account": ("'arn:aws:iam::12:role/x'", "not a valid IAM role ARN"),
    "role-arn-service": ("'arn:aws:s3:::bucket'", "not a valid IAM role ARN"),
    "image-tag": ("'bad tag!'", "not a valid image tag"),
    "image-platform": ("'windows/amd64'", "linux/amd64 or linux/arm64"),
    "image-repository": ("'UPPER'", "not a valid ECR repository name"),
    "family-name": ("'has space'", "not a valid task family name"),
    "secret-name": ("'bad name!'", "not a valid Secrets Manager secret name"),
    "credentials-path": ("'creds.json'", "must be an absolute path"),
    "credentials-env": ("'1BAD'", "not a valid environment variable name"),
    "subnet-id": ("'net-1' is not a valid subnet id",),
    "security-group-id": ("'sg-x' is not a valid security group id",),
    "schedule-timezone": ("not an IANA time zone",),
    "schedule-cron": ("has 3 fields, not 6",),
    "output-format": ("is not one of 'text', 'json'",),
    "unknown-option": ("No such option",),
    "unknown-command": ("No such command", "Did you mean 'bootstrap'"),
    "network-overlay": ("is not allowed", "none (the default), bridge or host"),
    "rotate-exclusive": ("--delete-previous and --keep-previous",),
    "aws-no-credentials": ("Configure a profile",),
    "aws-endpoint-down": ("http://127.0.0.1:9/",),
    "aws-unknown-profile": ("is not configured",),
    "iam-endpoint-down": ("stayed unavailable",),
    "engine-down": ("the socket does not exist",),
    "ecr-token-expired": ("security token included in the request is expired",),
    "secret-not-json": ("it is not JSON", "refusing to overwrite"),
    "secret-not-a-key": ('no "type": "service_account"', "refusing to overwrite"),
    "secret-wrong-account": ("not of runner-", "refusing to overwrite"),
    "secret-wrong-account-rotate": ("holds a key of someone-else", "refusing to overwrite"),
    "rollback-no-service": ("missing required setting",),
    "service-wait-not-bool": ("not 'maybe'",),
    "deregister-keep-none": ("0 is not in the range x>=1",),
    "deregister-unconfirmed": ("deletes revisions",),
    "service-missing": ("ECS cluster default of service nope does not exist",),
    "credentials-path-proc": ("under /proc", "use a data directory"),
    "credentials-path-dotdot": ("no '.', '..' or '//'", "'/etc/passwd'?"),
    "credentials-env-reserved": ("the wrapper unsets it after writing the key",),
    "config-deeply-nested": ("settings are at most two levels deep",),
    "config-path-directory": ("Pass the path of a gcpfargate.toml file",),
    "config-path-fifo": ("Pass the path of a gcpfargate.toml file",),
    "image-context-root": ("the whole machine would be sent to the Docker engine",),
    "template-huge-number": ("over 4096 bits",),
    "template-nested-loop": ("1000000 times",),
    "template-rendered-too-large": ("larger than 1024 KiB",),
    "template-aws-secret": ("deployer's credentials", "must never reach a task definition"),
    "template-device": ("(a device)", "Point task.template at a template file"),
}
