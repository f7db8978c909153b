"""The small part of CEL that workload identity attribute mappings and conditions use.

Google evaluates a provider's `attributeMapping` values and its `attributeCondition` as CEL
(https://cloud.google.com/iam/docs/workload-identity-federation#mapping). gcpfargate writes both
and `doctor` evaluates them locally against the task role's session ARN, so it needs exactly the
subset Google documents for AWS: string literals, `assertion.X` / `attribute.X` / `google.X`
members, `+` on strings, `==`, `!=`, `&&`, `||`, `!`, `?:`, parentheses and the string methods
`contains`, `startsWith`, `endsWith` and `extract` (Google's extension: the text matched by the
single `{name}` of a template, or "" when the template does not match). Anything else is a
`CelError`, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(?P<op>&&|\|\||==|!=|[.()+!?:,])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_METHODS = ("contains", "startsWith", "endsWith", "extract")


class CelError(ValueError):
    """The expression is outside the supported subset, or it failed to evaluate."""


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if match is None:
            raise CelError(f"unsupported CEL at offset {pos}: {source[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def extract(value: str, template: str) -> str:
    """Google's `extract`: '{account}assumed-role/' on 'arn:...:assumed-role/R/S' gives
    'arn:...:'."""
    match = re.fullmatch(r"([^{}]*)\{[A-Za-z_][A-Za-z0-9_]*\}([^{}]*)", template)
    if match is None:
        raise CelError(f"extract() template needs exactly one {{name}}: {template!r}")
    prefix, suffix = match.groups()
    start = value.find(prefix)
    if start < 0:
        return ""
    start += len(prefix)
    if not suffix:
        return value[start:]
    end = value.find(suffix, start)
    return "" if end < 0 else value[start:end]


class _Parser:
    def __init__(self, source: str, variables: Mapping[str, Mapping[str, Any]]) -> None:
        self.tokens = _tokens(source)
        self.pos = 0
        self.variables = variables

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise CelError("unexpected end of CEL expression")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise CelError(f"expected {expected!r} in CEL expression, found {token[1]!r}")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self.ternary()
        if self.pos != len(self.tokens):
            raise CelError(f"unexpected {self.peek()!r} in CEL expression")
        return value

    # Both branches are parsed (and evaluated: the subset has no side effects), then one is chosen.
    def ternary(self) -> Any:
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        if_true = self.ternary()
        self.take(":")
        if_false = self.ternary()
        return if_true if _bool(condition) else if_false

    _LEVELS = (("||",), ("&&",), ("==", "!="), ("+",))

    def binary(self, level: int) -> Any:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            op = self.take()[1]
            right = self.binary(level + 1)
            left = _apply(op, left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not _bool(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "name" or name not in _METHODS:
                raise CelError(f"unsupported CEL method {name!r}")
            self.take("(")
            argument = self.ternary()
            self.take(")")
            if not isinstance(value, str) or not isinstance(argument, str):
                raise CelError(f"{name}() works on strings only")
            value = _call(name, value, argument)
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if kind == "name" and text in ("true", "false"):
            return text == "true"
        if kind == "name" and text in self.variables:
            self.take(".")
            field_kind, field = self.take()
            if field_kind != "name":
                raise CelError(f"expected a field name after {text}.")
            if field not in self.variables[text]:
                raise CelError(f"no such key: {text}.{field}")
            return self.variables[text][field]
        raise CelError(f"unsupported CEL term {text!r}")


def _call(method: str, value: str, argument: str) -> Any:
    if method == "contains":
        return argument in value
    if method == "startsWith":
        return value.startswith(argument)
    if method == "endsWith":
        return value.endswith(argument)
    return extract(value, argument)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CelError(f"expected a boolean in CEL expression, got {type(value).__name__}")
    return value


def _apply(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        if not isinstance(left, str) or not isinstance(right, str):
            raise CelError("+ works on strings only")
        return left + right
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    return (_bool(left) or _bool(right)) if op == "||" else (_bool(left) and _bool(right))


def evaluate(expression: str, variables: Mapping[str, Mapping[str, Any]]) -> Any:
    """Evaluate `expression` with `variables` such as {"assertion": {"arn": ...}}."""
    return _Parser(expression, variables).parse()


def check_syntax(
    expression: str, names: tuple[str, ...] = ("assertion", "attribute", "google")
) -> None:
    """Raise CelError if `expression` is not in the subset. Members are looked up lazily, so the
    check uses a mapping that has every field."""

    class _Any(dict[str, object]):
        def __contains__(self, key: object) -> bool:
            return True

        def __getitem__(self, key: str) -> str:
            return ""

    try:
        evaluate(expression, {name: _Any() for name in names})
    except CelError as exc:
        if "expected a boolean" not in str(exc):
            raise


def map_attributes(mapping: Mapping[str, str], assertion: Mapping[str, Any]) -> dict[str, Any]:
    """Apply an attribute mapping: {"google.subject": ..., "attribute.x": ...} -> values."""
    return {
        target: evaluate(source, {"assertion": assertion}) for target, source in mapping.items()
    }


def condition_accepts(
    condition: str, assertion: Mapping[str, Any], attributes: Mapping[str, Any]
) -> bool:
    if not condition:
        return True
    attribute = {
        k.removeprefix("attribute."): v for k, v in attributes.items() if k.startswith("attribute.")
    }
    google = {
        k.removeprefix("google."): v for k, v in attributes.items() if k.startswith("google.")
    }
    return _bool(
        evaluate(condition, {"assertion": assertion, "attribute": attribute, "google": google})
    )
