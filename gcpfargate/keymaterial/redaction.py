"""Redacting a known key's own material from a stream of log lines (run-local).

`keyfile.redact` recognises key-shaped text line by line, so a PEM body folded to 50 columns, or
the short last line of a body, passes through it. A `MaterialRedactor` knows the keys it protects:
it removes any run of base64 characters of at least `MIN_RUN` characters that is part of a key's
body, and within longer runs every stretch of `GRAM` characters that occurs in a body, however the
body was folded, quoted or split across lines. Runs shorter than `MIN_RUN` are left alone: a few
characters of a 1,600-character body reveal nothing, and redacting them would garble ordinary text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from gcpfargate.keymaterial.keyfile import REDACTED

GRAM = 12
MIN_RUN = 8
_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(.*?)-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S
)
_RUN = re.compile(r"[A-Za-z0-9+/=]{" + str(MIN_RUN) + ",}")


def key_bodies(value: str) -> list[str]:
    """The base64 bodies of the PEM private keys in a secret's value (key JSON or PEM text)."""
    texts = [value]
    try:
        info = json.loads(value)
        if isinstance(info, dict) and isinstance(info.get("private_key"), str):
            texts.append(info["private_key"])
    except ValueError:
        pass
    bodies = []
    for text in texts:
        for block in _BLOCK.finditer(text.replace("\\n", "\n").replace("\\r", "\r")):
            body = re.sub(r"[^A-Za-z0-9+/=]", "", block.group(1))
            if len(body) >= GRAM:
                bodies.append(body)
    return bodies


class MaterialRedactor:
    """Call it on each log line: the line with every fragment of the known keys' bodies redacted."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._bodies = [body for value in secrets for body in key_bodies(value)]
        self._grams = {
            body[i : i + GRAM] for body in self._bodies for i in range(len(body) - GRAM + 1)
        }

    def __bool__(self) -> bool:
        return bool(self._bodies)

    def __call__(self, line: str) -> str:
        if not self._bodies:
            return line
        spans: list[tuple[int, int]] = []
        for run in _RUN.finditer(line):
            text = run.group().rstrip("=")
            if any(text in body for body in self._bodies):
                spans.append(run.span())
                continue
            covered = [False] * len(text)
            for i in range(len(text) - GRAM + 1):
                if text[i : i + GRAM] in self._grams:
                    covered[i : i + GRAM] = [True] * GRAM
            start = None
            for i, hit in enumerate([*covered, False]):
                if hit and start is None:
                    start = i
                elif not hit and start is not None:
                    spans.append((run.start() + start, run.start() + i))
                    start = None
        for start, end in sorted(spans, reverse=True):
            line = line[:start] + REDACTED + line[end:]
        return line
