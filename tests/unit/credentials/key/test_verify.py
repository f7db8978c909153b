"""The key verification's schedule, on a fake clock: README promises it backs off for over two
minutes (Google: a new key "can take 60 seconds or more" before it can be used)."""

from __future__ import annotations

import pytest

from gcpfargate.credentials.key import verify
from gcpfargate.errors import GcpError
from gcpfargate.keymaterial.keyfile import KeyMaterial


class FakeKey:
    key_id = "0" * 40
    client_email = "a@p.iam.gserviceaccount.com"
    token_uri = "http://127.0.0.1:1/token"


def _refusing(monkeypatch: pytest.MonkeyPatch, answers: list[str | None]) -> None:
    """The token endpoint answers `answers` in turn, then keeps answering the last."""

    def exchange(key: KeyMaterial) -> str | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(verify, "_exchange", exchange)


def test_not_yet_is_retried_for_over_two_minutes_then_left_unverified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _refusing(monkeypatch, ["invalid_grant: Invalid JWT Signature."])
    slept: list[float] = []
    verdict = verify.key_authenticates(FakeKey(), sleep=slept.append)  # type: ignore[arg-type]
    assert not verdict.verified and verdict.waited_s == sum(slept)
    assert sum(slept) > 120, slept
    assert max(slept) <= 15, slept  # short enough pauses that a key that starts working is seen


def test_a_key_that_starts_working_is_verified_at_the_next_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _refusing(monkeypatch, ["invalid_grant: Invalid JWT Signature."] * 4 + [None])
    slept: list[float] = []
    verdict = verify.key_authenticates(FakeKey(), sleep=slept.append)  # type: ignore[arg-type]
    assert verdict.verified and slept == [1, 2, 4, 8]


def test_a_deleted_key_or_another_refusal_is_final_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _refusing(monkeypatch, ["invalid_grant: Invalid JWT Signature."])
    with pytest.raises(GcpError, match="deleted or disabled"):
        verify.key_authenticates(
            FakeKey(),  # type: ignore[arg-type]
            still_live=lambda: False,
            sleep=lambda _: pytest.fail("a gone key is not waited for"),
        )
    _refusing(monkeypatch, ["invalid_grant: Invalid grant: account not found"])
    with pytest.raises(GcpError, match="account not found"):
        verify.key_authenticates(
            FakeKey(),  # type: ignore[arg-type]
            sleep=lambda _: pytest.fail("a final refusal is not retried"),
        )
