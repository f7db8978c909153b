from tests.conftest import Project
from tests.reliability.helpers import make_deployable, run_logged, check_invariants, unchanged_everywhere
import time

def test_probe(project: Project) -> None:
    make_deployable(project)
    t=time.time()
    r, calls = run_logged(project, "deploy", "--output", "json")
    print("deploy", time.time()-t, r.returncode, r.stdout, r.stderr[-3000:])
    for c in calls: print(c)
    t=time.time()
    r2, calls2 = run_logged(project, "deploy", "--output", "json")
    print("deploy2", time.time()-t, r2.stdout, [c for c in calls2 if c.write])
    print(check_invariants(project))
    t=time.time()
    r3, calls3 = run_logged(project, "rotate-key", "--output", "json")
    print("rotate", time.time()-t, r3.stdout, r3.stderr[-2000:])
    for c in calls3: print(c)
