"""Each test project starts with a copy of gcpfargate's botocore cache (tests/conftest.py
_seed_botocore_cache): the product must read those entries as its own, not parse and rewrite them,
or the seed saves nothing."""

from __future__ import annotations

import pytest

from tests.conftest import Project, cache_home


def test_a_projects_commands_read_the_seeded_botocore_entries(project: Project) -> None:
    data = cache_home(project.dir) / "gcpfargate" / "botocore-data"
    seeded = {entry.name: entry.stat().st_mtime_ns for entry in data.iterdir()}
    assert len(seeded) > 20  # ten services' models, paginators, waiters, the lists of services
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output
    after = {entry.name: entry.stat().st_mtime_ns for entry in data.iterdir()}
    assert {name: after[name] for name in seeded} == seeded  # read, none rewritten


@pytest.mark.cold_botocore_cache
def test_a_cold_marked_project_starts_with_no_botocore_cache(project: Project) -> None:
    """The files marked cold_botocore_cache (test_deploy.py, test_bootstrap.py) run a user's first
    command: nothing of the seed in the project's cache or home."""
    assert not cache_home(project.dir).exists()
    assert not (project.dir / ".home" / ".local").exists()
    result = project.run("bootstrap")
    assert result.returncode == 0, result.output
    assert any((cache_home(project.dir) / "gcpfargate" / "botocore-data").iterdir())
