"""Shared fixtures: the local stack (started once per session), per-test projects, and a CLI runner.

Tests drive the real entry point in a process of its own with the stack's environment, exactly as a
user would, and then look at the state of the world through boto3/docker/the emulator. The process
is forked from a zygote that has the SDKs imported (tests/stack/cli_zygote.py) unless the test asks
for a fresh interpreter; GCPFARGATE_TEST_ZYGOTE=0 runs every command in a fresh interpreter.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.stack.cli_zygote import Zygote
from tests.stack.local import ACCOUNT_ID, REGION, LocalStack

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # No skipping: when a service cannot start, every test that needs it errors (CI=true or not).
    # SIGTERM (a CI timeout, a killed run) stops the session like Ctrl-C, so the teardown below
    # stops moto, dockerd and the rest instead of leaving them running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with LocalStack() as local:
        yield local


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cache_home(directory: Path) -> Path:
    """XDG_CACHE_HOME of the project in `directory`: its own, beside it
    (tests/reliability/leakscan.py searches it with the project's $HOME)."""
    return directory.parent / f"{directory.name}.cache"


@dataclass
class Project:
    """A user's project directory with its gcpfargate.toml, names unique to one test."""

    dir: Path
    stack: LocalStack
    gcp_project: str
    account_id: str
    family: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def email(self) -> str:
        return f"{self.account_id}@{self.gcp_project}.iam.gserviceaccount.com"

    @property
    def secret_name(self) -> str:
        return f"gcpfargate/{self.account_id}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GCPFARGATE_", "AWS_"))}
        env.update(self.stack.env)
        # The cache too (layer scans, botocore's parsed data): each test starts with none, whatever
        # the developer's XDG_CACHE_HOME. Beside the project, as a user's ~/.cache is: the project
        # is the build context, and deploy writes the cache while its background build reads the
        # context.
        env.update(
            {
                "HOME": str(self.dir / ".home"),
                "XDG_CACHE_HOME": str(cache_home(self.dir)),
                "NO_COLOR": "1",
                "COLUMNS": "200",
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def base_config(self) -> str:
        """The [gcp] and [task] sections every test project starts with."""
        return (
            f'[gcp]\nproject = "{self.gcp_project}"\nservice_account = "{self.account_id}"\n\n'
            f'[task]\nfamily = "{self.family}"\n'
        )

    def write_config(self, body: str) -> Path:
        path = self.dir / "gcpfargate.toml"
        path.write_text(textwrap.dedent(body))
        return path

    def run(
        self,
        *args: str,
        env: dict[str, str | None] | None = None,
        timeout: float = 300,
        input: str | None = None,
        fresh_interpreter: bool = False,
    ) -> Result:
        """Run the CLI; an `env` value of None removes that variable. `fresh_interpreter`: in a
        new interpreter even where the zygote could fork it (for tests of start-up itself)."""
        full = {**self.env, **(env or {})}
        return run_cli(
            list(args),
            cwd=self.dir,
            env={k: v for k, v in full.items() if v is not None},
            timeout=timeout,
            input=input,
            fresh_interpreter=fresh_interpreter,
        )

    def aws(self, service: str, truth: bool = False) -> Any:
        """A client of the stack as the product sees it (through the strict layer); `truth`: of moto
        itself, for reading the whole world without the layer's simulated lags (ListSecrets)."""
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.stack.moto_direct_url if truth else self.stack.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def exists(self, kind: str, name: str) -> bool:
        """Whether one named resource exists, asked by name: the session's one moto outgrows the
        first page of ListRoles / ListSecrets / DescribeRepositories (100), so scanning a listing
        can miss it."""
        service, operation, arguments, missing = {
            "role": ("iam", "get_role", {"RoleName": name}, "NoSuchEntity"),
            "secret": (
                "secretsmanager",
                "describe_secret",
                {"SecretId": name},
                "ResourceNotFoundException",
            ),
            "repository": (
                "ecr",
                "describe_repositories",
                {"repositoryNames": [name]},
                "RepositoryNotFoundException",
            ),
        }[kind]
        from botocore.exceptions import ClientError

        try:
            getattr(self.aws(service), operation)(**arguments)
        except ClientError as error:
            if error.response["Error"]["Code"] == missing:
                return False
            raise
        return True


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def run_cli(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float | None = 300,
    input: str | None = None,
    fresh_interpreter: bool = False,
) -> Result:
    """`python -m gcpfargate ARGS` as subprocess.run would run it (output captured as text): forked
    from this worker's zygote, started at the first run, or in a fresh interpreter when asked, when
    GCPFARGATE_TEST_ZYGOTE=0, or when the run's environment needs one (the zygote tells)."""
    zygote = None if fresh_interpreter else _running_zygote()
    if zygote is None:
        record_figure("cli runs", "fresh interpreter" + (" (asked)" if fresh_interpreter else ""))
        proc = subprocess.run(
            [sys.executable, "-m", "gcpfargate", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
    else:
        fresh = sum(zygote.fresh.values())
        proc = zygote.run(args, cwd=cwd, env=env, timeout=timeout, input=input)
        if sum(zygote.fresh.values()) > fresh:
            record_figure("cli runs", "fresh interpreter (its environment needs one)")
        else:
            record_figure("cli runs", "forked from the zygote")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _running_zygote() -> Zygote | None:
    """This worker's zygote; a zygote that died between runs is replaced (and counted). One that
    cannot start fails the run: the suite does not quietly fall back to its slow path."""
    global _zygote
    if os.environ.get("GCPFARGATE_TEST_ZYGOTE", "1") == "0":
        return None
    with _zygote_lock:
        if _zygote is not None and not _zygote.alive():
            record_figure("cli runs", "zygote restarts (one died)")
            _zygote.close()
            _zygote = None
        if _zygote is None:
            # The environment every Project starts from (Project.env): the zygote's own decides
            # nothing a run sees, but runs whose start-up variables differ from it are not forked.
            base = {
                k: v for k, v in os.environ.items() if not k.startswith(("GCPFARGATE_", "AWS_"))
            }
            _zygote = Zygote(base).start()
        return _zygote


def _stop_zygote() -> None:
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


# The AWS services gcpfargate calls (its clients/aws.py callers), whose botocore models every
# project's cache starts with (see _seed_botocore_cache).
BOTOCORE_SERVICES = (
    "ecr", "ecs", "events", "iam", "kms", "logs", "scheduler", "secretsmanager", "ssm", "sts",
)  # fmt: skip
_SEED_SCRIPT = """
import sys
import boto3
from gcpfargate.clients.botocore_data import use_cached_files

session = boto3.Session(region_name="ap-northeast-1")
use_cached_files(session._session)
loader = session._session.get_component("data_loader")
for name in ("_retry", "sdk-default-configuration"):
    loader.load_data(name)
for service in sys.argv[1:]:
    for kind in ("service-2", "paginators-1", "waiters-2"):
        if service in loader.list_available_services(kind):
            loader.load_service_model(service, kind)
"""
_seed: list[Path] = []


def botocore_seed() -> Path:
    """This worker's seed of gcpfargate's botocore cache (clients/botocore_data.py: parsed models
    and the lists of services, signed) with the secret that signed it: `.home` and `cache`, made
    once per worker by the product's own loader."""
    if not _seed:
        root = Path(tempfile.mkdtemp(prefix="gcpf-botocore-seed-"))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "XDG_"))},
            "HOME": str(root / ".home"),
            "XDG_CACHE_HOME": str(root / "cache"),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        subprocess.run(
            [sys.executable, "-c", _SEED_SCRIPT, *BOTOCORE_SERVICES],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        _seed.append(root)
        atexit.register(shutil.rmtree, root, True)
    return _seed[0]


def _seed_botocore_cache(directory: Path) -> None:
    """Start the project in `directory` with a copy of the worker's botocore seed. Without it the
    first command of every test parses botocore's JSON models again, a fifth of a command's CPU;
    the layer and build-context records still start empty, the tests of the cache itself
    (tests/unit/test_cache_trust.py) make their own, and the files marked cold_botocore_cache
    start with none (test_deploy.py, test_bootstrap.py: the path of every user's first run).
    The leak scan passes over the copies that are still the seed's (reliability/leakscan.py)."""
    seed = botocore_seed()
    shutil.copytree(seed / ".home", directory / ".home", dirs_exist_ok=True)
    shutil.copytree(seed / "cache", cache_home(directory), dirs_exist_ok=True)


def new_project(
    stack: LocalStack, directory: Path, prefix: str = "", seeded: bool = True
) -> Project:
    """A fresh project: its own GCP project and service account in the emulator, its own family;
    `seeded`: its botocore cache starts as a copy of the worker's seed."""
    suffix = f"{os.getpid() % 10000}-{prefix}{next(_counter)}"
    project = Project(
        dir=directory,
        stack=stack,
        gcp_project=f"proj-{suffix}",
        account_id=f"runner-{suffix}",
        family=f"batch-{suffix}",
    )
    (directory / ".home").mkdir(parents=True, exist_ok=True)
    if seeded:
        _seed_botocore_cache(directory)
    stack.emulator.add_service_account(project.gcp_project, project.account_id)
    project.write_config(project.base_config)
    return project


@pytest.fixture
def project(stack: LocalStack, tmp_path: Path, request: pytest.FixtureRequest) -> Project:
    # The files marked cold_botocore_cache run their commands as a first run does, on an empty
    # cache (the deploy and bootstrap tests): the seed must not hide that path from the suite.
    cold = request.node.get_closest_marker("cold_botocore_cache") is not None
    return new_project(stack, tmp_path, seeded=not cold)


@pytest.fixture
def bootstrapped(project: Project) -> Project:
    """A project whose first `bootstrap` ran (service account key stored, execution role made)."""
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output
    return project


def _moto_api(stack: LocalStack, action: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{stack.moto_url}/moto-api/state-manager/{action}",
        data=json.dumps(body).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status < 300


@pytest.fixture
def hold_tasks(stack: LocalStack) -> Iterator[None]:
    """Tasks stay RUNNING until StopTask (moto's default advances them on every DescribeTasks), as
    ECS tasks do until their container exits."""
    _moto_api(
        stack,
        "set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
    )
    try:
        yield
    finally:
        _moto_api(stack, "unset-transition", {"model_name": "ecs::task"})


def secret_key(project: Project, stage: str = "AWSCURRENT") -> dict[str, Any]:
    """The key a version stage holds, read with the stage named: moto's stage-less read ignores
    stage moves."""
    value = project.aws("secretsmanager").get_secret_value(
        SecretId=project.secret_name, VersionStage=stage
    )
    return dict(json.loads(value["SecretString"]))


def gets_token(key: dict[str, Any]) -> bool:
    """Whether google-auth gets an access token with this key (the emulator's token endpoint checks
    it)."""
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        key, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.RefreshError:
        return False
    return bool(credentials.token)


def assert_one_clean_line(result: Result, code: int, *fragments: str) -> str:
    """A failure must be one line on stderr, exit `code`, no traceback, naming what matters."""
    assert result.returncode == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.output
    last = lines[-1]
    assert last.startswith("error: "), result.output
    assert "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in last, f"{fragment!r} not in {last!r}"
    return last


__all__ = ["ACCOUNT_ID", "REGION", "Project", "Result", "assert_one_clean_line"]


# Figures the reliability suite reports (cases tried, faults survived, leak hits), printed at the
# end.
FIGURES: dict[str, dict[str, int]] = {}


def record_figure(group: str, name: str, increment: int = 1) -> None:
    FIGURES.setdefault(group, {}).setdefault(name, 0)
    FIGURES[group][name] += increment


# `make test` runs the suite on several pytest-xdist workers, each with its own stack. A worker
# hands its figures to the controller when it finishes; the controller adds them up and prints them.
def pytest_sessionfinish(session: pytest.Session) -> None:
    _stop_zygote()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["gcpfargate_figures"] = json.dumps(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    figures = json.loads(getattr(node, "workeroutput", {}).get("gcpfargate_figures", "{}"))
    for group, values in figures.items():
        for name, value in values.items():
            record_figure(group, name, value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("gcpfargate reliability figures")
    for group, figures in sorted(FIGURES.items()):
        shown = ", ".join(f"{name}: {value}" for name, value in sorted(figures.items()))
        terminalreporter.write_line(f"{group}: {shown}")


# `make test` distributes by xdist group (`--dist loadgroup`): a file is one group, so its module
# fixtures are set up once, as with `--dist loadfile`; the parameters of the tests below are groups
# of their own (the matrices' slices take minutes each; the 64 bad-input cases add up to as much),
# so one file's work spreads over the workers.
SPREAD = {
    "test_bad_input",
    "test_deploy_survives_each_failing_call",
    "test_rotate_key_survives_each_failing_call",
    "test_conditional_writes_survive_each_failing_call",
    "test_lost_answer_of_a_create_call",
    # Single tests of 40 s or more (the last full run's --durations) that use no module fixture:
    # a group of their own, started with the matrices, instead of adding to their file's group.
    "test_no_key_material_anywhere",
    "test_deploy_permission_errors_name_the_step_and_the_permission",
    "test_shape_and_snapshot_see_content",
    "test_rotation_with_a_45_second_propagation_delay",
    "test_every_wrapping_in_the_build_context_is_refused",
    "test_deploy_rolls_the_service_and_rollback_returns",
}


def _spread(item: pytest.Item) -> bool:
    return getattr(item, "originalname", item.name) in SPREAD


def pytest_configure(config: pytest.Config) -> None:
    # xdist's default hands groups out largest first by their number of tests, which puts the
    # one-test groups above (the matrices' slices, a minute or more each) last of all, where one
    # starting late keeps a worker busy after the others finish. Keep the order below instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # xdist hands groups out in this order (see pytest_configure): the matrices' slices first, the
    # longest tests, so none starts last; then every file as collected (the reliability files,
    # minutes each, before the integration and unit files that fill the workers' tails). The
    # bad-input cases compare write counts, not snapshots of the whole stack, so where they run
    # no longer matters. The sort is stable: each module's items stay together and in order.
    def rank(item: pytest.Item) -> int:
        if getattr(item, "originalname", item.name) == "test_bad_input":
            return 1
        return 0 if _spread(item) else 1

    items.sort(key=rank)
    for item in items:
        group = item.nodeid if _spread(item) else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="module")
def base_image(stack) -> str:  # type: ignore[no-untyped-def]
    """The demo's Python base image (debootstrap, cached under ~/.cache) imported into the stack's
    engine."""
    env = {**__import__("os").environ, **stack.env}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "base-image.sh")], env=env, check=True, capture_output=True
    )
    return "gcpfargate-demo/python-base:bookworm"


@pytest.fixture(scope="module")
def modern_base(stack, base_image: str) -> str:  # type: ignore[no-untyped-def]
    """The demo base with this machine's google-auth 2.x instead of Debian bookworm's 1.5.1, which
    predates external_account credentials (README "Keyless", limits);
    scripts/keyless-base-image.sh."""
    env = {**os.environ, **stack.env, "PYTHON": sys.executable, "KEYLESS_BASE_IMAGE": MODERN_BASE}
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "keyless-base-image.sh")],
        env=env,
        check=True,
        capture_output=True,
    )
    return MODERN_BASE


MODERN_BASE = "gcpfargate-demo/python-base:bookworm-google-auth2"
