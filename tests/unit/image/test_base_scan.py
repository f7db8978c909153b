"""The base image a build starts FROM (image/base_scan.py), whose layers deploy searches while the
engine builds: only a plain image name is named; the search itself is proven on the stack
(tests/integration/image/test_key_guard.py)."""

from __future__ import annotations

import pytest

from gcpfargate.image.base_scan import final_base


@pytest.mark.parametrize(
    ("dockerfile", "base"),
    [
        ("FROM python:3.12-slim\nCOPY . /app\n", "python:3.12-slim"),
        (
            "# syntax=docker/dockerfile:1\nFROM --platform=linux/amd64 debian:bookworm\n",
            "debian:bookworm",
        ),
        # Multi-stage: the final stage's base, followed through stage names.
        (
            "FROM golang:1.22 AS build\nRUN go build\nFROM alpine:3.20\nCOPY --from=build /x /x\n",
            "alpine:3.20",
        ),
        ("FROM python:3.12 AS base\nFROM base AS app\nRUN true\nFROM app\n", "python:3.12"),
        (
            "FROM \\\n  registry.example.com/team/base:1 \\\n  AS b\nFROM b\n",
            "registry.example.com/team/base:1",
        ),
        # Not a plain name: left to the search after the build.
        ("FROM scratch\nCOPY busybox /bin/\n", None),
        ("ARG BASE=python:3.12\nFROM $BASE\n", None),
        ("FROM ${REGISTRY}/python:3.12\n", None),
        ("RUN echo no from\n", None),
    ],
)
def test_the_final_stages_base(dockerfile: str, base: str | None) -> None:
    assert final_base(dockerfile) == base
