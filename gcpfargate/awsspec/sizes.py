"""Fargate task sizes: the valid cpu/memory pairs, and the spellings users give them ("1 vCPU", "2
GB")."""

from __future__ import annotations

import re

# Fargate's valid task sizes: cpu units -> allowed memory in MiB.
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}


_CPU = re.compile(r"\s*(\d*\.?\d+)\s*(vcpu)?\s*", re.I)
_MEMORY = re.compile(r"\s*(\d*\.?\d+)\s*(gb|mb|mib|gib)?\s*", re.I)


def parse_cpu(text: str) -> int | None:
    match = _CPU.fullmatch(text)
    if not match:
        return None
    number = float(match.group(1))
    value = number * 1024 if match.group(2) else number
    return int(value) if value == int(value) else None


def parse_memory(text: str) -> int | None:
    match = _MEMORY.fullmatch(text)
    if not match:
        return None
    number = float(match.group(1))
    value = number * 1024 if (match.group(2) or "").lower() in ("gb", "gib") else number
    return int(value) if value == int(value) else None
