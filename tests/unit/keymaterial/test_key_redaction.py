"""run-local's log redaction on the key's own material (issue 13 item 12): a PEM body folded to any
width, the short last line of a body, a body split into pieces; ordinary text is left alone."""

from __future__ import annotations

import json

from gcpfargate.keymaterial.keyfile import redact
from gcpfargate.keymaterial.redaction import MaterialRedactor
from tests.unit.helpers import key_json, pem


def body() -> str:
    return "".join(pem().splitlines()[1:-1])


def leaked(lines: list[str], text: str) -> list[str]:
    """Fragments of 8+ characters of the body that are still in the redacted lines."""
    return [line for line in lines if len(line) >= 8 and line in text]


def test_a_body_folded_to_50_columns_and_its_short_last_line_are_redacted() -> None:
    redactor = MaterialRedactor([key_json().decode()])
    folded = [body()[i : i + 50] for i in range(0, len(body()), 50)]
    assert len(folded[-1]) < 50
    # Line-based redaction lets these through: the bug this fixes.
    assert any(redact(line) == line for line in folded)
    out = [redactor(line) for line in folded]
    assert all("[REDACTED]" in line for line in out)
    assert leaked(folded, "\n".join(out)) == []


def test_pieces_inside_other_text_and_json_escapes_are_redacted() -> None:
    redactor = MaterialRedactor([key_json().decode()])
    piece = body()[100:160]
    line = f"debug: token part={piece} next"
    assert redactor(line) == "debug: token part=[REDACTED] next"
    escaped = json.dumps(pem())[30:200]  # the body with its \n escapes, as a JSON log line shows it
    assert body()[40:60] not in redactor(escaped)
    last = pem().splitlines()[-2]
    assert redactor(f"tail: {last}") == "tail: [REDACTED]"


def test_ordinary_lines_and_other_base64_are_left_alone() -> None:
    redactor = MaterialRedactor([key_json().decode(), "not a key"])
    for line in [
        "job ran",
        "called the GCP API as a@p.iam.gserviceaccount.com",
        "sha256:" + "ab" * 32,
        "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSBrZXk=",
    ]:
        assert redactor(line) == line
    assert not MaterialRedactor(["plain password"])
    assert MaterialRedactor(["plain password"])("x" * 100) == "x" * 100
