"""The task-definition template: render it (sandboxed Jinja2) and validate what it renders.

Every problem is one `TemplateError` that says where: the template's path and line for Jinja
errors, line:column for text that is not JSON, and the JSON path (such as
`containerDefinitions[0].portMappings[0].containerPort`) for a definition ECS would refuse.
Validation uses the RegisterTaskDefinition input model that botocore ships, so it follows the
real API rather than a hand-written schema, and runs before any AWS call.
"""

from __future__ import annotations

import functools
import json
import os
import types
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from gcpfargate.awsspec.sizes import FARGATE_SIZES, parse_cpu, parse_memory
from gcpfargate.ecs import fargate_rules
from gcpfargate.errors import ConfigError, TemplateError
from gcpfargate.taskdef import guard as template_guard

# The names SPEC §4 promises to templates.
VARIABLES = (
    "family",
    "image",
    "image_digest",
    "secret_arn",
    "credentials_path",
    "credentials_env",
    "execution_role_arn",
    "region",
    "account_id",
    "vars",
)


class _MissingEnv(Exception):
    """Raised inside the template by must_env; becomes a TemplateError with the line."""


# -- rendering ------------------------------------------------------------------------------------
def _environment(path: Path, environ: Mapping[str, str], env_vars: Collection[str] = ()) -> Any:
    import jinja2

    def env(name: str, default: str = "") -> str:
        template_guard.refuse_unlisted(name, env_vars)
        value = environ.get(name, default)
        template_guard.refuse_credentials(name, value)
        return value

    def must_env(name: str) -> str:
        template_guard.refuse_unlisted(name, env_vars)
        value = environ.get(name)
        if value is None or value == "":
            raise _MissingEnv(f"environment variable {name} is not set (must_env)")
        template_guard.refuse_credentials(name, value)
        return value

    # Includes only from the template's own directory, with the sandbox's cost limits.
    environment = template_guard.limited_environment_class()(
        loader=template_guard.confined_loader(path.resolve().parent),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )

    def tojson(value: Any, indent: int | None = None) -> str:
        # Jinja's own tojson would turn an undefined name into a TypeError without its name.
        def undefined(item: Any) -> Any:
            if isinstance(item, jinja2.Undefined):
                item._fail_with_undefined_error()
            raise TypeError(f"a {type(item).__name__} cannot be written as JSON")

        return json.dumps(value, indent=indent, default=undefined)

    environment.globals.update(env=env, must_env=must_env, range=template_guard.counted_range([0]))
    environment.filters["tojson"] = tojson
    return environment


def used_variables(path: Path) -> set[str]:
    """The names from `VARIABLES` the template refers to, so only those are looked up (a template
    that never says `secret_arn` does not need the secret to exist)."""
    from jinja2 import meta

    source = read_template(path)
    try:
        ast = _environment(path, os.environ).parse(source, path.name, str(path))
        return set(meta.find_undeclared_variables(ast)) & set(VARIABLES)
    except Exception as exc:  # a syntax error: render() reports it with its line
        _raise_for(exc, path)
        raise  # unreachable: _raise_for always raises


def read_template(path: Path) -> str:
    try:
        return template_guard.read_limited(path)
    except FileNotFoundError:
        raise ConfigError(
            f"template {path} does not exist",
            "Run `gcpfargate init` to write one, or set task.template",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read template {path}: {type(exc).__name__}") from None


def render_text(
    path: Path,
    variables: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    env_vars: Collection[str] = (),
) -> str:
    """`env_vars`: the variables env()/must_env() may read besides GCPFARGATE_VAR_*
    (task.env_vars)."""
    environment = _environment(path, os.environ if environ is None else environ, env_vars)
    read_template(path)
    try:
        return template_guard.render_limited(
            environment.get_template(path.resolve().name), variables
        )
    except Exception as exc:
        _raise_for(exc, path)
        raise  # unreachable: _raise_for always raises


def render(
    path: Path,
    variables: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    env_vars: Collection[str] = (),
) -> dict[str, Any]:
    """Render the template and parse the result as one JSON object."""
    return parse_json(render_text(path, variables, environ, env_vars), path)


def shown(path: Path | str) -> str:
    """The path as the user would type it: relative to the current directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _raise_for(exc: BaseException, path: Path) -> None:
    import jinja2

    if isinstance(exc, jinja2.TemplateSyntaxError):
        raise TemplateError(
            f"{shown(path)}:{exc.lineno}: template syntax error: {exc.message}",
            "Fix the Jinja syntax on that line",
        ) from None
    line = _template_line(exc, path)
    where = f"{shown(path)}:{line}" if line else shown(path)
    if isinstance(exc, jinja2.UndefinedError):
        known = ", ".join(VARIABLES)
        raise TemplateError(
            f"{where}: undefined name: {exc.message}",
            f"Known variables: {known}; free values go in [task.vars] as vars.NAME",
        ) from None
    if isinstance(exc, template_guard.TemplateRefused):
        raise TemplateError(f"{where}: {exc}") from None
    if isinstance(exc, RecursionError):
        raise TemplateError(f"{where}: the template nests too deeply (recursion)") from None
    if isinstance(exc, _MissingEnv):
        raise TemplateError(
            f"{where}: {exc}", "Set it in the environment, or use env(name, default)"
        ) from None
    if isinstance(exc, jinja2.exceptions.SecurityError):
        raise TemplateError(f"{where}: not allowed in a template: {exc}") from None
    if isinstance(exc, jinja2.TemplateError):
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from None
    if isinstance(exc, TemplateError | ConfigError):
        raise exc
    raise TemplateError(
        f"{where}: the template failed to render: {type(exc).__name__}: {exc}"
    ) from None


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line Jinja put into the traceback (it rewrites frames to the template's
    lines)."""
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    wanted = {str(path), path.name, str(path.resolve())}
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in wanted:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def parse_json(text: str, path: Path) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise TemplateError(
                    f"{shown(path)}: the rendered JSON has the key {key!r} twice in one object",
                    "Remove one of them",
                )
            found[key] = value
        return found

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            f"{shown(path)}:{exc.lineno}:{exc.colno}: the rendered template is not JSON: {exc.msg} "
            "(line:column of the rendered text)",
            _json_hint(exc),
            excerpt=_caret(text, exc.lineno, exc.colno),
        ) from None
    except ValueError as exc:
        raise TemplateError(f"{shown(path)}: the rendered template is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(
            f"{shown(path)}: the rendered template is JSON but not an object",
            'A task definition is one JSON object: { "family": ..., ... }',
        )
    return data


def _json_hint(exc: json.JSONDecodeError) -> str:
    """What usually causes this JSON error in a template; tojson only where a bare value is
    likely."""
    if exc.msg.startswith("Expecting ',' delimiter"):
        return "A comma is missing between two values or fields, just before the caret"
    if exc.msg.startswith("Expecting property name"):
        return "A field name must be in double quotes, and JSON allows no comma before } or ]"
    if exc.msg.startswith("Expecting ':' delimiter"):
        return 'A field needs a colon between its name and its value: "name": value'
    if exc.msg.startswith("Extra data"):
        return "The template must render exactly one JSON object; something follows its last }"
    if exc.msg.startswith(("Expecting value", "Invalid control character", "Unterminated")):
        return (
            "Quote values with the tojson filter, e.g. {{ vars.name | tojson }}; "
            "`gcpfargate render` shows what was rendered"
        )
    return "Fix the JSON at that line and column"


EXCERPT_WIDTH = 100


def _caret(text: str, lineno: int, colno: int) -> str:
    """The rendered line `lineno` with a caret under column `colno`, cut to fit a terminal."""
    lines = text.splitlines() or [""]
    line = lines[min(lineno, len(lines)) - 1].expandtabs(
        1
    )  # a tab counts as one column, as in colno
    column = max(colno - 1, 0)
    start = max(0, column - EXCERPT_WIDTH // 2) if len(line) > EXCERPT_WIDTH else 0
    shown_line = line[start : start + EXCERPT_WIDTH]
    gutter = f"{lineno} | "
    return f"{gutter}{shown_line}\n{' ' * (len(gutter) - 2)}| {' ' * (column - start)}^"


# -- validation -----------------------------------------------------------------------------------
_TYPE_WORDS = {
    "<class 'str'>": "a string",
    "<class 'int'>": "an integer",
    "<class 'bool'>": "true or false",
    "<class 'list'>": "a list",
    "<class 'tuple'>": "a list",
    "<class 'dict'>": "an object",
    "<class 'float'>": "a number",
    "<class 'decimal.Decimal'>": "a number",
}
_JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


@functools.cache
def _service_input_shape() -> Any:
    # Loading the ECS model costs ~40 ms: once per process is enough.
    import botocore.session

    return input_shape(botocore.session.get_session().get_service_model("ecs"))


def input_shape(service_model: Any) -> Any:
    return service_model.operation_model("RegisterTaskDefinition").input_shape


def shape_problems(definition: Mapping[str, Any], shape: Any = None) -> list[str]:
    """What botocore's own validator (plus the model's enums) finds wrong, each with its JSON
    path."""
    import botocore.validate

    shape = shape if shape is not None else _service_input_shape()
    report = botocore.validate.ParamValidator().validate(dict(definition), shape)
    problems = [_describe(error) for error in getattr(report, "_errors", [])]
    problems.extend(_enum_problems(definition, shape, ""))
    return problems


def _describe(error: tuple[str, str, dict[str, Any]]) -> str:
    kind, name, extra = error
    where = name.lstrip(".")
    at = f"at {where}" if where else "at the top level"
    # Values are described by type, never quoted: a misplaced key must not end up in the message.
    if kind == "missing required field":
        field = f"{where}.{extra['required_name']}" if where else extra["required_name"]
        return f"{field} is required"
    if kind == "unknown field":
        import difflib

        close = difflib.get_close_matches(
            extra["unknown_param"], list(extra.get("valid_names") or []), n=1
        )
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown field {extra['unknown_param']!r} {at}{guess}"
    if kind == "invalid type":
        wanted = " or ".join(dict.fromkeys(_TYPE_WORDS.get(t, t) for t in extra["valid_types"]))
        return f"{where} must be {wanted}, not {_JSON_TYPES.get(type(extra['param']), 'that')}"
    if kind == "invalid range":
        return f"{where} must be at least {extra['min_allowed']}"
    if kind == "invalid length":
        return f"{where} must have length at least {extra['min_allowed']}"
    return f"{where or 'the definition'}: {kind}"


def _enum_problems(value: Any, shape: Any, where: str) -> Iterable[str]:
    """botocore's validator leaves enums to the service; ECS would refuse them after the call."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                yield from _enum_problems(value[name], member, f"{where}.{name}" if where else name)
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _enum_problems(item, shape.member, f"{where}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _enum_problems(item, shape.value, f"{where}.{key}")
    elif (
        kind == "string"
        and isinstance(value, str)
        and getattr(shape, "enum", None)
        and value not in shape.enum
    ):
        yield f"{where} must be one of {', '.join(shape.enum)}, not {value!r}"


def validate(
    definition: Mapping[str, Any], path: Path | str, shape: Any = None, fargate: bool = True
) -> None:
    """Raise one TemplateError when ECS or Fargate would refuse `definition` (`shape`: the
    RegisterTaskDefinition input shape, when the caller has the ECS model loaded already;
    `fargate=False`: the shape only)."""
    problems = shape_problems(definition, shape)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise TemplateError(
            f"{shown(path)}: invalid task definition: {'; '.join(problems[:3])}{more}",
            "Compare with the ECS RegisterTaskDefinition reference",
        )
    if fargate and "FARGATE" in (definition.get("requiresCompatibilities") or []):
        _validate_fargate(definition, path)


def _validate_fargate(definition: Mapping[str, Any], path: Path | str) -> None:
    # Everything Fargate cannot run, in one line: fixing one problem should not reveal the next.
    problems: list[tuple[str, str]] = []
    if definition.get("networkMode") != "awsvpc":
        found = definition.get("networkMode")
        problems.append(
            (
                f"networkMode is {json.dumps(found) if found else 'not set'}, but FARGATE "
                "requires awsvpc",
                'Set "networkMode": "awsvpc" (containers then reach each other on localhost)',
            )
        )
    problems.extend(fargate_rules.unsupported_on_fargate(definition))
    if not definition.get("cpu") or not definition.get("memory"):
        missing = " and ".join(name for name in ("cpu", "memory") if not definition.get(name))
        problems.append(
            (
                f"FARGATE requires task-level cpu and memory ({missing} not set)",
                'Set e.g. "cpu": "256", "memory": "512"; valid sizes (memory in MiB): '
                + valid_sizes(),
            )
        )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise TemplateError(
            f"{shown(path)}: {'; '.join(problem for problem, _ in problems[:3])}{more}",
            "; ".join(fix for _, fix in problems[:3]),
        )
    cpu = parse_cpu(str(definition["cpu"]))
    memory = parse_memory(str(definition["memory"]))
    if cpu is None:
        raise TemplateError(
            f"{shown(path)}: cpu {definition['cpu']!r} is not a Fargate cpu value",
            f'Use one of {", ".join(map(str, FARGATE_SIZES))} (or e.g. "1 vCPU")',
        )
    if memory is None:
        raise TemplateError(
            f"{shown(path)}: memory {definition['memory']!r} is not a memory size",
            'Use MiB as a number in a string ("2048") or GB ("2 GB")',
        )
    if cpu not in FARGATE_SIZES:
        raise TemplateError(
            f"{shown(path)}: cpu {cpu} is not a Fargate task size",
            f"Use one of {', '.join(map(str, FARGATE_SIZES))}",
        )
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        raise TemplateError(
            f"{shown(path)}: cpu {cpu} with memory {memory} is not a valid Fargate combination",
            f"With cpu {cpu}, memory must be {_ranges(allowed)} (MiB)",
        )


def valid_sizes() -> str:
    """Every Fargate task size, compactly: one clause per cpu value, memory in MiB."""

    def short(values: list[int]) -> str:
        if len(values) <= 3:
            return ", ".join(map(str, values))
        return f"{values[0]}-{values[-1]} step {values[1] - values[0]}"

    return "; ".join(f"cpu {cpu}: {short(memory)}" for cpu, memory in FARGATE_SIZES.items())


def _ranges(values: list[int]) -> str:
    if len(values) <= 3:
        return ", ".join(map(str, values))
    return f"{values[0]} to {values[-1]} in steps of {values[1] - values[0]}"
