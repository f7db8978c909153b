"""The `big-image` case of `make bench` (issue 18): a realistic image, built locally with no
download.

The image: the Python base `make demo` builds (scripts/base-image.sh: debootstrap bookworm with
python3, imported once from the tarball cached under ~/.cache/gcpfargate), a ~400 MB layer of
made-up installed dependencies written by a RUN step (make_deps.py, as `pip install` would fill
it) and a small app layer. Each repetition has two sides with their own names and build contexts:

  (b) gcpfargate deploy (its own, initially empty, scan cache: XDG_CACHE_HOME)
  (m) docker build && docker push of the same change (the image half of the manual recipe, bare:
      no login, no task definition; gcpfargate's deploy does both of those too)

for three cases: first (everything built and pushed; the RUN step gets a per-side ENV so each side
builds its own dependency layer, as a new project would), app-only (app.py changed) and no-op.
The cheap cases run several rounds per repetition (ROUNDS), who goes first alternating, so their
medians rest on more than two runs on a machine whose timings wander by a quarter. Each no-op
deploy is paired with a run of the floor (importing the SDKs it needs), one right after the other,
so the two see the same machine. Peak RSS of every gcpfargate run comes from wait4() of that
process.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CASES = ("first", "app-only", "no-op")
FLOOR = [
    sys.executable,
    "-c",
    "import boto3, docker, google.cloud.iam_admin_v1, jinja2, typer, rich",
]
BASE_IMAGE = "gcpfargate-demo/python-base:bookworm"
TARGETS = {"first": "<= 1.15 x (m)", "app-only": "<= (m) + floor"}
ROUNDS = {"first": 1, "app-only": 3, "no-op": 5}  # per repetition


def timed(argv: list[str], cwd: Path, env: dict[str, str], out: Path) -> tuple[float, int, str]:
    """Wall time, peak RSS (MB, from wait4 of this very process) and stdout of one command."""
    with out.open("w") as stdout, (out.parent / (out.name + ".err")).open("w") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:3])} "
            f"failed:\n{(out.parent / (out.name + '.err')).read_text()[-3000:]}"
        )
    return elapsed, usage.ru_maxrss // 1024, out.read_text()


def write_context(
    context: Path, side: str, app: str, deps_in_context: bool = False, size_mb: int = 400
) -> None:
    """The build context; `deps_in_context`: the ~400 MB of dependencies are files of the context
    (vendored, `COPY deps /opt/deps`), written here by make_deps.py, instead of by a RUN step."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "app.py").write_text(f'print("{app}")\n')
    if deps_in_context:
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("make_deps.py")),
                str(context / "deps"),
                str(size_mb),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # The generated files are the same for every side, and BuildKit's COPY cache is keyed by
        # content alone: one file of the side's own makes each side copy and push its own layer,
        # as two projects' dependencies would be.
        (context / "deps" / "DEPENDENCY_SET").write_text(side + "\n")
        install = "COPY deps /opt/deps\n"
    else:
        shutil.copyfile(Path(__file__).with_name("make_deps.py"), context / "make_deps.py")
        install = (
            "COPY make_deps.py /tmp/make_deps.py\n"
            f"RUN python3 /tmp/make_deps.py /opt/deps {size_mb} && rm /tmp/make_deps.py\n"
        )
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        f"ENV DEPENDENCY_SET={side}\n" + install + "COPY app.py /app/app.py\n"
        'CMD ["python3", "/app/app.py"]\n'
    )


# The build context's key search alone (core/context_scan.py), in a process of its own: the first
# time every file is read; the second time, with the record the first one left, none is.
_CONTEXT_SCAN = """
import sys, time
from pathlib import Path
from gcpfargate.image import context_scan
from gcpfargate.image.guard import scan_context
start = time.perf_counter()
found = scan_context(Path(sys.argv[1]), "Dockerfile")
elapsed = time.perf_counter() - start
record = context_scan.CleanFiles(Path(sys.argv[1]))
print(f"{elapsed:.3f} {len(record.load())} {len(found)}")
"""


class BigImage:
    def __init__(
        self,
        work: Path,
        tool_env: Any,
        add_account: Any,
        gcpfargate: str,
        check: Any,
        deps_in_context: bool = False,
        size_mb: int = 400,
    ) -> None:
        self.size_mb = size_mb
        self.cold: dict[str, list[float]] = {"inline": [], "none": []}
        self.work, self.tool_env, self.add_account, self.gcpfargate, self.check = (
            work / "big",
            tool_env,
            add_account,
            gcpfargate,
            check,
        )
        self.deps_in_context = deps_in_context
        self.context_scans: list[
            tuple[float, float, int]
        ] = []  # (first, second) seconds, files recorded
        self.times: dict[str, dict[str, list[float]]] = {
            case: {"ours": [], "manual": []} for case in CASES
        }
        self.rss: dict[str, list[int]] = {case: [] for case in CASES}
        self.floor: list[float] = []

    def ensure_base(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "base-image.sh")],
            check=True,
            env=self.tool_env(),
            stdout=subprocess.DEVNULL,
        )
        # The base's layers go to the registry once, before either side: the engine mounts a
        # layer the registry holds in another repository instead of pushing it again, so without
        # this whichever side pushes first pays for the other's 130 MB as well.
        warm = f"{os.environ['GCPFARGATE_ECR_REGISTRY']}/bench-base:bookworm"
        for argv in (["docker", "tag", BASE_IMAGE, warm], ["docker", "push", "-q", warm]):
            subprocess.run(argv, check=True, env=self.tool_env(), stdout=subprocess.DEVNULL)

    def deploy(self, side: Path, case: str) -> float:
        env = self.tool_env({"XDG_CACHE_HOME": str(side / "cache")})
        elapsed, rss, stdout = timed(
            [self.gcpfargate, "deploy", "--output", "json"], side, env, side / f"{case}.out"
        )
        self.check(case.replace("app-only", "image-only"), json.loads(stdout))
        self.rss[case].append(rss)
        return elapsed

    def manual(self, side: Path, case: str) -> float:
        """`docker build && docker push` with BuildKit, as gcpfargate builds: the same CLI (buildx
        or the CLI's own BuildKit) and the same --network."""
        from gcpfargate.clients.engine.buildkit import BUILDX, find_builder

        builder = find_builder(podman=False)
        build = (
            f"{builder.cli} buildx build --load"
            if builder.kind == BUILDX
            else f"DOCKER_BUILDKIT=1 {builder.cli or 'docker'} build"
        )
        network = os.environ.get("GCPFARGATE_IMAGE_NETWORK", "default")
        if network != "default":
            build += f" --network {network}"
        image = (
            f"{os.environ['GCPFARGATE_ECR_REGISTRY']}/{side.name}:"
            f"{time.strftime('%H%M%S')}{case[:1]}"
        )
        script = f"{build} -q -t {image} app >/dev/null && docker push -q {image} >/dev/null"
        return timed(["bash", "-c", script], side, self.tool_env(), side / f"{case}.out")[0]

    def cold_engine(self, side: Path) -> None:
        """Forget the side's images and the whole build cache, as a fresh CI runner's engine has
        none (the local-only base image stays: no registry holds it)."""
        import docker

        client = docker.from_env()
        for each in client.api.images(name=f"{os.environ['GCPFARGATE_ECR_REGISTRY']}/{side.name}"):
            client.api.remove_image(each["Id"], force=True)
        client.api.prune_builds(all=True)

    def cold_deploys(self, side: Path) -> None:
        """An app-only change on a cold engine: with the inline cache (--cache-from the registered
        image), then without it (image.cache = "none")."""
        for turn, cache in enumerate(("inline", "none")):
            self.cold_engine(side)
            (side / "app" / "app.py").write_text(f'print("cold {cache}")\n')
            env = self.tool_env(
                {"XDG_CACHE_HOME": str(side / "cache"), "GCPFARGATE_IMAGE_CACHE": cache}
            )
            elapsed, _, stdout = timed(
                [self.gcpfargate, "deploy", "--output", "json"], side, env, side / f"cold{turn}.out"
            )
            self.check("image-only", json.loads(stdout))
            self.cold[cache].append(elapsed)
            sys.stderr.write(f"[bench] big-image cold engine, cache {cache}: {elapsed:.2f} s\n")

    def repetition(self, rep: int, run_id: str) -> None:
        # Each layout's sides have names of their own: a run of both layouts shares one stack.
        layout = "c" if self.deps_in_context else "r"
        ours = self.work / f"bg{layout}{run_id}r{rep}"
        hand = self.work / f"bm{layout}{run_id}r{rep}"
        for side in (ours, hand):
            write_context(side / "app", side.name, "v1", self.deps_in_context, self.size_mb)
        if self.deps_in_context:
            self.context_scan(ours / "app")
        self.add_account(ours.name)
        shutil.copyfile(
            ROOT / "templates" / "task-definition.json.j2", ours / "task-definition.json.j2"
        )
        (ours / "gcpfargate.toml").write_text(
            f'[gcp]\nproject = "bench-project"\nservice_account = "{ours.name}"\n\n'
            f'[image]\nrepository = "{ours.name}"\ncontext = "app"\n\n[task]\nfamily = '
            f'"{ours.name}"\n'
        )
        for case in CASES:
            for turn in range(ROUNDS[case]):
                if case == "app-only":
                    for side in (ours, hand):
                        (side / "app" / "app.py").write_text(f'print("v{turn + 2}")\n')
                order = [("ours", ours), ("manual", hand)]
                first = (rep + turn) % 2
                for who, side in order[first:] + order[:first]:  # alternate who goes first
                    run = self.deploy if who == "ours" else self.manual
                    self.times[case][who].append(run(side, case))
                if case == "no-op":
                    start = time.perf_counter()
                    subprocess.run(FLOOR, check=True)
                    self.floor.append(time.perf_counter() - start)
                sys.stderr.write(
                    f"[bench] big-image rep {rep + 1} {case} {turn + 1}: gcpfargate "
                    f"{self.times[case]['ours'][-1]:.2f} s (peak RSS {self.rss[case][-1]} MB), "
                    f"docker build && push {self.times[case]['manual'][-1]:.2f} s\n"
                )
        self.cold_deploys(ours)

    def context_scan(self, context: Path) -> None:
        """Time the context's key search twice, in a cache of its own; the deploys later start cold
        too."""
        time.sleep(
            3.5
        )  # the files just written must be older than context_scan.SETTLED_SECONDS to be recorded
        cache = context.parent / "scan-cache"
        env = self.tool_env({"XDG_CACHE_HOME": str(cache)})
        runs = [
            subprocess.run(
                [sys.executable, "-c", _CONTEXT_SCAN, str(context)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout.split()
            for _ in range(2)
        ]
        shutil.rmtree(cache)
        self.context_scans.append((float(runs[0][0]), float(runs[1][0]), int(runs[1][1])))

    def run(self, reps: int) -> list[str]:
        self.work.mkdir(parents=True, exist_ok=True)
        self.ensure_base()
        run_id = f"{os.getpid() % 100000}"
        load = [os.getloadavg()[1]]
        for rep in range(reps):
            self.repetition(rep, run_id)
            load.append(os.getloadavg()[1])
        return self.report(reps, load)

    def report(self, reps: int, load: list[float]) -> list[str]:
        def median(values: list[float]) -> float:
            return statistics.median(values)

        floor = median(self.floor) if self.floor else 0.0
        where = (
            "dependencies in the build context (`COPY deps`)"
            if self.deps_in_context
            else "dependencies written by a RUN step"
        )
        lines = [
            f"## big-image: a 130 MB Python base + {self.size_mb} MB of dependencies + an app "
            f"layer; {where}; BuildKit on both sides",
            "",
            f"{reps} repetitions; per repetition "
            + ", ".join(f"{case} x{ROUNDS[case]}" for case in CASES)
            + "; medians; (m) is `docker build && docker push` of the same change "
            "(the image half of the manual recipe, without login or task definition). "
            f"{os.cpu_count()} CPUs; 5-minute load average "
            + " → ".join(f"{each:.1f}" for each in load)
            + " (before, and after each repetition). The stack's IAM refuses a changed role for "
            "10 s after the change, as AWS's propagation does, instead of at its first use "
            "(bench/run.py `iam_propagation_by_time`).",
            "",
            "| case | (m) docker build && push | (b) gcpfargate deploy | (b)/(m) | target | peak "
            "RSS (b) |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for case in CASES:
            m, b = median(self.times[case]["manual"]), median(self.times[case]["ours"])
            lines.append(
                f"| {case} | {m:.2f} s | {b:.2f} s | {b / m:.2f} | {TARGETS.get(case, '')} | "
                f"{max(self.rss[case])} MB |"
            )
        first = median(self.times["first"]["ours"]) / median(self.times["first"]["manual"])
        over = median(self.times["app-only"]["ours"]) - median(self.times["app-only"]["manual"])
        peak = max(max(each) for each in self.rss.values())
        lines += [
            "",
            f"The issue's figures: first deploy **{first:.2f} x** `docker build && docker push` "
            f"(target <= 1.15); app-only deploy minus `docker build && docker push` "
            f"**{over:.2f} s** against one SDK import floor of {floor:.2f} s (target: at most "
            f"the floor); peak RSS **{peak} MB** (target < 200).",
        ]
        noop = median(self.times["no-op"]["ours"])
        change = median(self.times["app-only"]["ours"]) - noop
        if floor:
            lines += [
                "",
                f'No-op deploy / SDK import floor (`{" ".join(FLOOR[1:2])} "{FLOOR[2]}"`, '
                f"{floor:.2f} s): "
                f"**{noop / floor:.2f}** (target <= 1.3).",
            ]
        if self.cold["inline"]:
            inline, none = median(self.cold["inline"]), median(self.cold["none"])
            lines += [
                "",
                f"Cold engine (images and build cache removed), app-only change: gcpfargate deploy "
                f"with the inline cache **{inline:.2f} s**, without it (image.cache = none) "
                f"{none:.2f} s: **{inline / none:.2f}** (target <= 0.5).",
            ]
        lines += [
            "",
            f"The change's own cost, app-only minus no-op (medians): gcpfargate **{change:.2f} s** "
            "(build, key guard on the new layer, push, register) against "
            f"{median(self.times['app-only']['manual']):.2f} s for docker build && push.",
            "",
            "Every run, in seconds:",
            "",
        ]
        for case in CASES:
            lines.append(
                f"- {case}: (m) "
                + ", ".join(f"{v:.2f}" for v in self.times[case]["manual"])
                + "; (b) "
                + ", ".join(f"{v:.2f}" for v in self.times[case]["ours"])
                + "; peak RSS (b) "
                + ", ".join(f"{v}" for v in self.rss[case])
                + " MB"
            )
        if self.floor:
            lines.append("- import floor: " + ", ".join(f"{v:.2f}" for v in self.floor))
        for first, second, recorded in self.context_scans:
            lines.append(
                f"- build context key search alone: {first:.2f} s reading every file, then "
                f"{second:.2f} s with {recorded} files recorded clean and unchanged"
            )
        return lines
