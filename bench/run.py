"""`make bench`: the manual recipe versus `gcpfargate deploy`, side by side, on the local stack.

Run under the stack (`python -m tests.stack.local run -- python bench/run.py`), which sets
AWS_ENDPOINT_URL, DOCKER_HOST, GCPFARGATE_ECR_REGISTRY, IAM_EMULATOR_HOST and IAM_EMULATOR_HTTP.

For each repetition, with fresh names (service account, secret, role, repository, family):
  first       (a) bench/manual_recipe.sh first  vs  (b) gcpfargate deploy on an empty account
  image-only  a file in the build context changed, then
              (a) manual_recipe.sh rerun (the whole recipe again: new key, put-secret-value, image,
              register) (a') manual_recipe.sh image (only login, build, tag, push, register)  vs
              (b) gcpfargate deploy
  no-op       nothing changed: the same three
(a') has its own names and build context (set up with an untimed `first`), so each side pushes its
own change. The order of the sides rotates between repetitions so no side always gets the warmer
caches. A warm-up deploy (not timed) fills the engine's build cache and yields the task definition
the manual recipe registers (`gcpfargate render --output json`, names swapped for placeholders).

Then the `big-image` case (bench/big_image/case.py): a 530 MB image, deploy vs `docker build &&
docker push`, with peak RSS. `--only big-image` or `--only standard` runs one part.

Prints a table and writes it to docs/bench.md, together with the start-up figures and the calls
each gcpfargate deploy made (GCPFARGATE_CALL_LOG); then runs bench/calls.py, which counts the calls
of every command into docs/calls.md (skip with --no-calls).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack.images import write_busybox_context  # noqa: E402

BIN = Path(sys.executable).parent
GCPFARGATE = str(BIN / "gcpfargate")
CASES = ("first", "image-only", "no-op")
PROJECT = "bench-project"
REQUIRED_ENV = (
    "AWS_ENDPOINT_URL",
    "DOCKER_HOST",
    "GCPFARGATE_ECR_REGISTRY",
    "IAM_EMULATOR_HOST",
    "IAM_EMULATOR_HTTP",
)


def log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def add_service_account(account_id: str) -> str:
    """The account exists before either side runs, as it would in a real project (emulator admin
    API)."""
    body = json.dumps({"project": PROJECT, "account_id": account_id}).encode()
    request = urllib.request.Request(
        f"{os.environ['IAM_EMULATOR_HTTP']}/admin/service-accounts",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["email"])


def write_context(directory: Path, content: str) -> None:
    write_busybox_context(
        directory,
        ["COPY app.txt /app.txt", 'CMD ["cat", "/app.txt"]'],
        files={"app.txt": content + "\n"},
    )


class Side:
    """One side of a repetition: its names, its build context and how to run it."""

    def __init__(self, work: Path, name: str) -> None:
        self.name = name
        self.dir = work / name
        self.context = self.dir / "app"
        self.account_id = name
        self.email = add_service_account(name)
        write_context(self.context, f"{name} v1")

    def change_image(self) -> None:
        (self.context / "app.txt").write_text(f"{self.name} v2\n")


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GCPFARGATE_")
        or k in ("GCPFARGATE_ECR_REGISTRY", "GCPFARGATE_IMAGE_NETWORK")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


class Gcpfargate(Side):
    def __init__(self, work: Path, name: str) -> None:
        super().__init__(work, name)
        shutil.copyfile(
            ROOT / "templates" / "task-definition.json.j2", self.dir / "task-definition.json.j2"
        )
        (self.dir / "gcpfargate.toml").write_text(
            f'[gcp]\nproject = "{PROJECT}"\nservice_account = "{name}"\n\n'
            f'[image]\nrepository = "{name}"\ncontext = "app"\n\n[task]\nfamily = "{name}"\n'
        )
        self.calls: dict[str, collections.Counter[str]] = {}

    def run(self, case: str) -> tuple[float, dict[str, Any]]:
        call_log = self.dir / f"calls-{case}.log"
        start = time.perf_counter()
        proc = subprocess.run(
            [GCPFARGATE, "deploy", "--output", "json"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            env=tool_env({"GCPFARGATE_CALL_LOG": str(call_log)}),
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"gcpfargate deploy ({case}) failed:\n{proc.stderr[-3000:]}")
        self.calls[case] = collections.Counter(call_log.read_text().splitlines())
        return elapsed, json.loads(proc.stdout)


class Manual(Side):
    def __init__(self, work: Path, name: str, template: Path) -> None:
        super().__init__(work, name)
        self.template = template
        self.outputs: dict[str, str] = {}

    def run(self, mode: str) -> float:
        env = tool_env(
            {
                "SA_EMAIL": self.email,
                "SECRET_NAME": f"manual/{self.name}",
                "ROLE_NAME": f"{self.name}-exec",
                "REPO": self.name,
                "FAMILY": self.name,
                "CONTEXT": str(self.context),
                "TAG": time.strftime("%Y%m%d%H%M%S", time.gmtime()),
                "TASKDEF_TEMPLATE": str(self.template),
                "PYTHON": sys.executable,
                "AWS_CLI": str(BIN / "aws"),
                "SECRET_ARN": self.outputs.get("secret_arn", ""),
                "ROLE_ARN": self.outputs.get("role_arn", ""),
            }
        )
        start = time.perf_counter()
        proc = subprocess.run(
            ["bash", str(ROOT / "bench" / "manual_recipe.sh"), mode],
            cwd=self.dir,
            capture_output=True,
            text=True,
            env=env,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"manual recipe ({mode}) failed:\n{proc.stderr[-3000:]}")
        self.outputs.update(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        return elapsed


def check(case: str, result: dict[str, Any]) -> None:
    """The bench only counts runs that did the job: each case changes what it should and nothing
    else."""
    changed = {step: bool(result[step]["changed"]) for step in result}
    expected = {
        "first": {"bootstrap": True, "push-image": True, "register-task": True},
        "image-only": {"bootstrap": False, "push-image": True, "register-task": True},
        "no-op": {"bootstrap": False, "push-image": False, "register-task": False},
    }[case]
    # The family's run history (an EventBridge rule and its log group) is made once, by the first
    # deploy of a family.
    if "run-history" in result:
        expected = {**expected, "run-history": case == "first"}
    if changed != expected:
        raise SystemExit(f"gcpfargate deploy ({case}) changed {changed}, expected {expected}")


def manual_template(work: Path) -> Path:
    """A warm-up deploy (untimed), then its rendered definition with the names turned into
    placeholders."""
    warm = Gcpfargate(work, f"warm{os.getpid() % 100000}")
    _, result = warm.run("first")
    pinned = result["push-image"]["image"]
    if "@" not in pinned:
        pinned = pinned.rsplit(":", 1)[0] + "@" + result["push-image"]["digest"]
    proc = subprocess.run(
        [GCPFARGATE, "render", "--output", "json", "--image", pinned],
        cwd=warm.dir,
        capture_output=True,
        text=True,
        env=tool_env(),
        check=True,
    )
    definition = json.loads(proc.stdout)
    text = json.dumps(definition, indent=2)
    container = definition["containerDefinitions"][0]
    for value, placeholder in (
        (container["image"], "__IMAGE__"),
        (container["secrets"][0]["valueFrom"], "__SECRET_ARN__"),
        (definition["executionRoleArn"], "__ROLE_ARN__"),
        (f"/ecs/{warm.name}", "/ecs/__FAMILY__"),
        (f'"{warm.name}"', '"__FAMILY__"'),
    ):
        text = text.replace(value, placeholder)
    template = work / "manual-task-definition.json"
    template.write_text(text)
    return template


# -- start-up -----------------------------------------------------------------------------------
def startup(rounds: int) -> dict[str, float]:
    commands = {
        "gcpfargate --help": [GCPFARGATE, "--help"],
        "gcpfargate --version": [GCPFARGATE, "--version"],
        'python -c "import typer"': [sys.executable, "-c", "import typer"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


# -- report -------------------------------------------------------------------------------------
def render_report(
    reps: int,
    manual: dict[str, list[float]],
    image_half: dict[str, list[float]],
    ours: dict[str, list[float]],
    start_up: dict[str, float],
    calls: dict[str, collections.Counter[str]],
) -> str:
    def runs(values: list[float]) -> str:
        return ", ".join(f"{value:.2f}" for value in values)

    lines = [
        "# Benchmark: the manual recipe vs `gcpfargate deploy`",
        "",
        f"Local stack (moto server, private dockerd, docker-registry, gRPC IAM emulator); {reps} "
        f"repetitions per case, medians of wall time; {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d', time.gmtime())}. Produced by "
        "`make bench` (bench/run.py) in __TOTAL__ s.",
        "",
        "| case | (a) recipe | (b) gcpfargate deploy | (b)/(a) | target | (a') image half only | "
        "(b)/(a') |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for case in CASES:
        a, b = statistics.median(manual[case]), statistics.median(ours[case])
        target = "" if case == "first" else "<= 0.5"
        if case in image_half:
            half = statistics.median(image_half[case])
            extra = f"{half:.2f} s | {b / half:.2f}"
        else:
            extra = "– | –"
        lines.append(f"| {case} | {a:.2f} s | {b:.2f} s | {b / a:.2f} | {target} | {extra} |")
    lines += ["", "Every run, in seconds:", ""]
    for case in CASES:
        lines.append(
            f"- {case}: (a) {runs(manual[case])}; (b) {runs(ours[case])}"
            + (f"; (a') {runs(image_half[case])}" if case in image_half else "")
        )
    lines += [
        "",
        "- **(a) recipe** is `bench/manual_recipe.sh`, the article's four steps scripted as a user "
        "would. `first`: a google-cloud-iam script creates the key, piped (never written to disk) "
        "into `aws secretsmanager create-secret`; `aws iam` creates the execution role, attaches "
        "the managed policy and lets it read the secret (the step the article forgets; gcpfargate "
        "does it, so the recipe does too); `aws ecr create-repository`; `aws ecr "
        "get-login-password | docker login` (into a temporary DOCKER_CONFIG); `docker build`, "
        "`docker tag`, `docker push`; `aws logs create-log-group`; `aws ecs "
        "register-task-definition --cli-input-json` with the definition `gcpfargate render` "
        "produces. For image-only and no-op it is `rerun`: "
        "the recipe run again as a deploy script does on every change, since it cannot tell what "
        "changed: a new key, `put-secret-value`, login, build, tag, push, register (a new revision "
        "each time).",
        "- **(a') image half only** is `manual_recipe.sh image`: login, build, tag, push, "
        "register, for a user who knows the key needs nothing. Shown for honesty: it is the "
        "fastest thing a careful user could type, and it still registers a new revision every "
        "time.",
        "- **(b)** is `gcpfargate deploy --output json` in a project with the same build context. "
        "It checks every step (the service account, that the stored key is still live in GCP, the "
        "execution role's policies, the image in the registry, the registered revision) and "
        "changes only what differs; each run's `changed` flags are asserted (first: all; "
        "image-only: push and register; no-op: none).",
        "",
        "## Start-up",
        "",
        "| command | median wall time |",
        "|---|---:|",
    ]
    lines += [f"| `{name}` | {value * 1000:.0f} ms |" for name, value in start_up.items()]
    ratio = start_up["gcpfargate --help"] / start_up['python -c "import typer"']
    lines += [
        "",
        f"`gcpfargate --help` / `import typer` = {ratio:.2f} (target <= 1.5).",
        "",
        "## Calls made by gcpfargate deploy (last repetition, GCPFARGATE_CALL_LOG)",
        "",
        "| call | first | image-only | no-op |",
        "|---|---:|---:|---:|",
    ]
    names = sorted(set().union(*calls.values()))
    for name in names:
        lines.append(
            f"| `{name}` | " + " | ".join(str(calls[case].get(name, 0)) for case in CASES) + " |"
        )
    lines.append(
        "| **total** | " + " | ".join(str(sum(calls[case].values())) for case in CASES) + " |"
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--startup-rounds", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench.md"))
    parser.add_argument(
        "--no-calls", action="store_true", help="do not run bench/calls.py afterwards"
    )
    parser.add_argument(
        "--only", choices=("standard", "speed-work", "big-image"), help="run only that part"
    )
    parser.add_argument("--speed-rounds", type=int, default=7)
    parser.add_argument("--big-reps", type=int, default=2)
    parser.add_argument(
        "--big-size",
        type=int,
        default=400,
        help="MB of dependencies in the big image (400: the issue's ~530 MB image)",
    )
    parser.add_argument(
        "--big-layouts",
        default="run,context",
        help="big-image layouts, comma-separated: run (dependencies written by a RUN step), "
        "context (dependencies as files of the build context); make bench runs both",
    )
    args = parser.parse_args()
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        sys.stderr.write(
            f"error: {', '.join(missing)} not set; run under the local stack: make bench\n"
        )
        return 2
    began = time.perf_counter()
    report = ""
    if args.only in (None, "standard"):
        report = standard(args)
    if args.only in (None, "speed-work"):
        from bench import speed_work

        log("speed work: deploy with each piece switched off, beside deploy with all of it")
        with tempfile.TemporaryDirectory(prefix="gcpfargate-bench-speed-") as tmp:
            lines = speed_work.run(
                Path(tmp), Gcpfargate, tool_env, check, args.speed_rounds, f"{os.getpid() % 100000}"
            )
        report += ("\n" if report else "") + "\n".join(lines) + "\n"
    if args.only in (None, "big-image"):
        from bench.big_image.case import BigImage

        for layout in args.big_layouts.split(","):
            with (
                tempfile.TemporaryDirectory(prefix="gcpfargate-bench-big-") as tmp,
                iam_propagation_by_time(),
            ):
                log(f"big-image ({layout} layout): base image, then deploy vs docker build && push")
                big = BigImage(
                    Path(tmp),
                    tool_env,
                    add_service_account,
                    GCPFARGATE,
                    check,
                    deps_in_context=layout == "context",
                    size_mb=args.big_size,
                ).run(args.big_reps)
            report += ("\n" if report else "") + "\n".join(big) + "\n"
    report = report.replace("__TOTAL__", f"{time.perf_counter() - began:.0f}")
    sys.stdout.write("\n" + report)
    out = Path(args.out)
    if args.only is not None and out.exists():
        # Only that part is new: keep the other parts of the last run.
        report = merged(out.read_text(), report, args.only)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    log(f"wrote {out}")
    if not args.no_calls and args.only is None:
        log("calls per command: bench/calls.py")
        return subprocess.run(
            [sys.executable, str(ROOT / "bench" / "calls.py")], check=False
        ).returncode
    return 0


PARTS = ("standard", "speed-work", "big-image")
IAM_PROPAGATION_S = 10.0


@contextlib.contextmanager
def iam_propagation_by_time() -> Iterator[None]:
    """The stack's IAM eventual consistency (tests/stack/strict/consistency.py) as AWS has it, by
    time: a role is refused for IAM_PROPAGATION_S after each change ("a rerun a few seconds later
    succeeds"), not at its first use whenever that comes, which the tests count so a slow machine
    sees the same refusals. The big-image first deploy registers ~50 s after making its role:
    there AWS would not refuse it, and the count would charge gcpfargate a retry the manual side
    (build and push only) never makes."""
    admin = os.environ["AWS_ENDPOINT_URL"].rstrip("/") + "/_strict/"
    with urllib.request.urlopen(admin, timeout=10) as answer:
        settings = json.load(answer)["settings"]
    before = {key: settings[key] for key in ("consistency_refusals", "consistency_delay")}

    def post(changed: dict[str, float]) -> None:
        request = urllib.request.Request(
            admin + "settings", json.dumps(changed).encode(), {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    post({"consistency_refusals": 0, "consistency_delay": IAM_PROPAGATION_S})
    try:
        yield
    finally:
        post(before)


def _part(section: str) -> str:
    if section.startswith("## big-image"):
        return "big-image"
    if section.startswith("## Speed work"):
        return "speed-work"
    return "standard"


def _sections(text: str) -> list[str]:
    """The report's `## ` sections (the first is the title and whatever precedes the first)."""
    pieces = text.split("\n## ")
    return [pieces[0].strip("\n")] + ["## " + each.strip("\n") for each in pieces[1:]]


def merged(last: str, new: str, part: str) -> str:
    """The last report with `part`'s sections replaced by the new ones, parts in their order."""
    sections = [each for each in _sections(last) if each and _part(each) != part]
    sections += [each for each in _sections(new) if each]
    sections.sort(key=lambda each: PARTS.index(_part(each)))  # stable: each part keeps its order
    return "\n\n".join(sections) + "\n"


def standard(args: argparse.Namespace) -> str:
    """The manual recipe vs deploy on the busybox image, and the start-up figures."""
    log("start-up: gcpfargate --help vs import typer")
    start_up = startup(args.startup_rounds)
    manual: dict[str, list[float]] = {case: [] for case in CASES}  # (a): the recipe, first or rerun
    image_half: dict[str, list[float]] = {
        case: [] for case in CASES[1:]
    }  # (a'): only the image half
    ours: dict[str, list[float]] = {case: [] for case in CASES}
    run_id = f"{os.getpid() % 100000}"
    with tempfile.TemporaryDirectory(prefix="gcpfargate-bench-") as tmp:
        work = Path(tmp)
        log("warm-up deploy and the manual recipe's task definition")
        template = manual_template(work)
        calls: dict[str, collections.Counter[str]] = {}
        for rep in range(args.reps):
            tool = Gcpfargate(work, f"g{run_id}r{rep}")
            hand = Manual(work, f"m{run_id}r{rep}", template)
            half = Manual(work, f"h{run_id}r{rep}", template)
            half.run("first")  # set-up for (a'), not timed
            for case in CASES:
                if case == "image-only":
                    for side in (tool, hand, half):
                        side.change_image()
                sides = (
                    ["manual", "gcpfargate"]
                    if case == "first"
                    else ["manual", "image-half", "gcpfargate"]
                )
                # Rotate who goes first, so no side always inherits the others' warm caches.
                shift = rep % len(sides)
                for who in sides[shift:] + sides[:shift]:
                    if who == "manual":
                        manual[case].append(hand.run("first" if case == "first" else "rerun"))
                    elif who == "image-half":
                        image_half[case].append(half.run("image"))
                    else:
                        elapsed, result = tool.run(case)
                        check(case, result)
                        ours[case].append(elapsed)
                shown = f", image half {image_half[case][-1]:.2f} s" if case in image_half else ""
                log(
                    f"rep {rep + 1}/{args.reps} {case}: recipe {manual[case][-1]:.2f} s{shown}, "
                    f"gcpfargate {ours[case][-1]:.2f} s"
                )
            calls = tool.calls
    return render_report(args.reps, manual, image_half, ours, start_up, calls)


if __name__ == "__main__":
    sys.exit(main())
