"""The emulator's own CEL: cel-python (a complete CEL implementation) plus Google's `extract`.

gcpfargate evaluates attribute mappings and conditions itself
(`gcpfargate/credentials/keyless/cel.py`, for `doctor`). If the emulator judged token exchanges with
that same code, a bug in it would pass every test on both sides. So the emulator evaluates with an
independent implementation: cel-python for the language, and `extract` written here from Google's
description (https://cloud.google.com/iam/docs/workload-identity-federation#mapping: "extract a
value from a string using a template with one {placeholder}; an empty string when the template does
not match"). `tests/unit/credentials/keyless/test_cel_oracle.py` checks that the two agree on the
expressions gcpfargate writes and on hostile ones.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any


class CelRefused(ValueError):
    """The expression does not compile, names something it may not, or fails to evaluate."""


@functools.cache
def _environment() -> Any:
    import celpy  # heavy (builds a lark parser): once per emulator process

    return celpy.Environment()


def _extract(value: Any, template: Any) -> Any:
    from celpy import celtypes

    placeholders = re.findall(r"\{[^{}]*\}", str(template))
    if len(placeholders) != 1:
        raise ValueError(f"extract() template must hold one {{placeholder}}: {template!r}")
    before, after = str(template).split(placeholders[0])
    pattern = re.escape(before) + ("(.*?)" + re.escape(after) if after else "(.*)")
    found = re.search(pattern, str(value), flags=re.DOTALL)
    return celtypes.StringType(found.group(1) if found else "")


def _compile(expression: str, names: tuple[str, ...]) -> Any:
    import celpy

    try:
        ast = _environment().compile(expression)
    except celpy.CELParseError as exc:
        raise CelRefused(f"cannot parse: {str(exc).splitlines()[0]}") from None
    used = {str(token) for node in ast.find_data("ident") for token in node.children}
    extra = sorted(used - set(names))
    if extra:
        raise CelRefused(
            f"undeclared reference to {', '.join(extra)} (allowed: {', '.join(names)})"
        )
    return ast


def check(expression: str, names: tuple[str, ...] = ("assertion", "attribute", "google")) -> None:
    _compile(expression, names)


def _evaluate(expression: str, names: tuple[str, ...], activation: Mapping[str, Any]) -> Any:
    import celpy

    program = _environment().program(_compile(expression, names), functions={"extract": _extract})
    try:
        # Dotted names ("google.subject"), not nested maps: cel-python reads `google.` as the
        # protobuf package prefix, so a variable named `google` would never be looked up.
        result = program.evaluate(
            {
                f"{group}.{name}": celpy.json_to_cel(value)
                for group, values in activation.items()
                for name, value in values.items()
            }
        )
    except (celpy.CELEvalError, ValueError, TypeError) as exc:
        raise CelRefused(f"evaluation failed: {_short(exc)}") from None
    if isinstance(result, celpy.CELEvalError):
        raise CelRefused(f"evaluation failed: {_short(result)}")
    return result


def _short(error: Exception) -> str:
    """cel-python's messages carry the whole activation; the first argument says what went wrong."""
    first = error.args[0] if error.args else error
    return str(first).split(" (in activation", 1)[0][:200]


def map_attributes(mapping: Mapping[str, str], assertion: Mapping[str, Any]) -> dict[str, str]:
    """{"google.subject": expr, "attribute.x": expr} applied to the assertion; every value a
    string."""
    out: dict[str, str] = {}
    for target, expression in mapping.items():
        value = _evaluate(expression, ("assertion",), {"assertion": assertion})
        if not isinstance(value, str):
            raise CelRefused(f"{target} must map to a string, got {type(value).__name__}")
        out[target] = str(value)
    return out


def condition_accepts(
    condition: str, assertion: Mapping[str, Any], attributes: Mapping[str, str]
) -> bool:
    if not condition:
        return True
    grouped: dict[str, dict[str, str]] = {
        "assertion": dict(assertion),
        "attribute": {},
        "google": {},
    }
    for target, value in attributes.items():
        prefix, _, name = target.partition(".")
        grouped.setdefault(prefix, {})[name] = value
    from celpy import celtypes

    verdict = _evaluate(condition, ("assertion", "attribute", "google"), grouped)
    if not isinstance(verdict, celtypes.BoolType):
        raise CelRefused(f"the condition must be a boolean, got {type(verdict).__name__}")
    return bool(verdict)
