"""EventBridge Scheduler expressions: parse, validate locally, and compute the next run times.

Three forms are accepted, as AWS does: `cron(minutes hours day-of-month month day-of-week year)`,
`rate(value unit)` and `at(yyyy-mm-ddThh:mm:ss)`. Validating here turns AWS's terse
ValidationException into a message that names the bad field before anything is sent, and the
local evaluator lets `gcpfargate schedule` show when the task will really run, in the schedule's
own time zone.

The AWS cron dialect differs from Unix cron: six fields (a year at the end), day-of-week counts
1-7 from SUNDAY (not 0-6 from Monday), and exactly one of day-of-month / day-of-week must be `?`.
Supported: `*`, `?`, lists, ranges (wrapping ones such as FRI-MON too), steps (`*/5`, `10/15`,
`1-20/2`), month and weekday names, `L` (last day of month; in day-of-week `5L` = last Thursday),
`W` (`15W` nearest weekday, `LW` last weekday) and `#` (`6#3` = third Friday).

People write Unix cron (five fields, `0 3 * * *`) and macros (`@daily`): both are converted
to the six-field AWS form before anything else, and `Expression.written` keeps what was typed so
the conversion can be shown. Unix cron runs when day-of-month OR day-of-week matches if both are
restricted; AWS cannot say that, so such a line is refused rather than silently narrowed.

Daylight saving time follows EventBridge Scheduler's documented behaviour: a wall-clock time that
does not exist (spring forward) is skipped, and an ambiguous one (fall back) runs once.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gcpfargate.errors import ExpressionError

_MONTHS = {
    name: i
    for i, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        start=1,
    )
}
_WEEKDAYS = {
    name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)
}
_FIELD_NAMES = ["minutes", "hours", "day-of-month", "month", "day-of-week", "year"]
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)]
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
EXAMPLES = "cron(0 3 * * ? *), rate(1 hour) or at(2030-01-31T09:00:00)"
# The crontab(5) macros, as five-field Unix cron lines. @reboot has no schedule equivalent.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNIX_WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]  # Unix 0-6 (7 is SUN too)


def _aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday, as AWS counts."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class DayRule:
    """Day-of-month or day-of-week: plain values plus the special L / W / # forms."""

    values: frozenset[int]
    last_day: bool = False  # L in day-of-month
    last_weekday_of_month: bool = False  # LW
    nearest_weekday: frozenset[int] = frozenset()  # 15W
    last_of_weekday: frozenset[int] = frozenset()  # 5L in day-of-week
    nth_weekday: frozenset[tuple[int, int]] = frozenset()  # (6, 3) for 6#3

    def matches_month_day(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.values or (self.last_day and day.day == last):
            return True
        if self.last_weekday_of_month and day == _nearest_weekday(day.replace(day=last)):
            return True
        return any(
            wanted <= last and day == _nearest_weekday(day.replace(day=wanted))
            for wanted in self.nearest_weekday
        )

    def matches_week_day(self, day: date) -> bool:
        weekday = _aws_weekday(day)
        if weekday in self.values:
            return True
        last = calendar.monthrange(day.year, day.month)[1]
        if weekday in self.last_of_weekday and day.day + 7 > last:
            return True
        return (weekday, (day.day - 1) // 7 + 1) in self.nth_weekday


def _nearest_weekday(day: date) -> date:
    """The weekday nearest to `day` without leaving its month (Quartz's W)."""
    if day.weekday() < 5:
        return day
    last = calendar.monthrange(day.year, day.month)[1]
    if day.weekday() == 5:  # Saturday: Friday before, unless that leaves the month
        return day - timedelta(days=1) if day.day > 1 else day + timedelta(days=2)
    return day + timedelta(days=1) if day.day < last else day - timedelta(days=2)  # Sunday


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    years: tuple[int, ...]
    day_of_month: DayRule | None  # None: `?`
    day_of_week: DayRule | None

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        if self.day_of_month is not None:
            return self.day_of_month.matches_month_day(day)
        assert self.day_of_week is not None
        return self.day_of_week.matches_week_day(day)


@dataclass(frozen=True)
class Expression:
    """A parsed schedule expression; `text` is the canonical form sent to AWS."""

    text: str
    kind: str  # "cron", "rate" or "at"
    cron: Cron | None = None
    rate: timedelta | None = None
    at: datetime | None = None  # naive: wall-clock time in the schedule's zone
    written: str = ""  # as typed when it was converted (`@daily`, `cron(0 3 * * *)`), else text

    @property
    def converted(self) -> bool:
        return bool(self.written) and self.written != self.text


def parse(text: str) -> Expression:
    """Parse `cron(...)`, `rate(...)` or `at(...)`; raise ExpressionError naming what is wrong."""
    stripped = " ".join(text.split())
    if stripped.startswith("@"):
        return _macro(stripped)
    match = re.fullmatch(r"(cron|rate|at)\s?\((.*)\)", stripped)
    if not match:
        raise ExpressionError(
            f"schedule expression {text!r} is not cron(...), rate(...) or at(...)",
            f"Use a form such as {EXAMPLES}",
        )
    kind, body = match.group(1), match.group(2).strip()
    if kind == "cron":
        if len(body.split()) == 5:
            aws = from_unix(body)
            return Expression(f"cron({aws})", "cron", cron=parse_cron(aws), written=f"cron({body})")
        return Expression(f"cron({body})", "cron", cron=parse_cron(body))
    if kind == "rate":
        text_rate, delta = _parse_rate(body)
        return Expression(f"rate({text_rate})", "rate", rate=delta)
    if not _AT.fullmatch(body):
        raise ExpressionError(
            f"at({body}) is not at(yyyy-mm-ddThh:mm:ss)", "For example at(2030-01-31T09:00:00)"
        )
    try:
        when = datetime.fromisoformat(body)
    except ValueError as exc:
        raise ExpressionError(f"at({body}) is not a valid date and time: {exc}") from None
    return Expression(f"at({body})", "at", at=when)


def from_flags(
    cron: str | None = None, rate: str | None = None, expression: str | None = None
) -> str | None:
    """The expression given by `--cron`, `--rate` or `--expression` (at most one), canonicalised."""
    given = [
        (name, value)
        for name, value in (("--cron", cron), ("--rate", rate), ("--expression", expression))
        if value
    ]
    if len(given) > 1:
        raise ExpressionError(
            f"{' and '.join(name for name, _ in given)} exclude each other",
            "Give the schedule one expression",
        )
    if not given:
        return None
    name, value = given[0]
    value = value.strip()
    if name == "--cron" and not value.startswith(("cron(", "@")):
        value = f"cron({value})"
    elif name == "--rate" and not value.startswith("rate("):
        value = f"rate({value})"
    parsed = parse(value)
    # A converted form stays as typed, so the command that uses it can show the conversion.
    return parsed.written if parsed.converted else parsed.text


def _macro(text: str) -> Expression:
    unix = MACROS.get(text.lower())
    if unix is None:
        raise ExpressionError(
            f"schedule expression {text!r} is not a cron macro EventBridge can run",
            f"Use one of {', '.join(MACROS)}, or a form such as {EXAMPLES}",
        )
    aws = from_unix(unix)
    return Expression(f"cron({aws})", "cron", cron=parse_cron(aws), written=text.lower())


def from_unix(body: str) -> str:
    """A five-field Unix cron line as the six AWS fields (year `*`, one day field `?`).

    Day-of-week numbers move from Unix's 0-7 (0 and 7 = Sunday) to names, which mean the same in
    both dialects; a `?` already given is kept.
    """
    minute, hour, dom, month, dow = body.split()
    if dom == "?" or dow == "?":
        return f"{minute} {hour} {dom} {month} {dow} *"
    if dow == "*":
        return f"{minute} {hour} {dom} {month} ? *"
    if dom != "*":
        raise ExpressionError(
            f"cron({body}): Unix cron runs when day-of-month ({dom}) OR day-of-week ({dow})"
            " matches, which EventBridge cannot express",
            "Restrict one of the two (use * for the other), or schedule each separately",
        )
    return f"{minute} {hour} ? {month} {_unix_weekdays(dow, body)} *"


def _unix_weekdays(field: str, body: str) -> str:
    """Unix day-of-week terms with their numbers turned into SUN-SAT names."""

    def day(token: str) -> str:
        if token.isdigit() and int(token) <= 7:
            return _UNIX_WEEKDAYS[int(token) % 7]
        if token.upper() in _WEEKDAYS:
            return token.upper()
        raise ExpressionError(
            f"cron({body}): day-of-week {token!r} is not 0-7 or SUN-SAT",
            "Unix cron counts 0-7 from Sunday (0 and 7 are Sunday)",
        )

    terms = []
    for term in field.split(","):
        base, slash, step = term.partition("/")
        if base == "*":
            terms.append(term if not slash else f"1/{step}")  # AWS steps start from a value
        elif "-" in base:
            first, _, last = base.partition("-")
            names = day(first), day(last)
            if last == "7" and first != "0":
                # 7 is Sunday: x-7 runs to the week's end, which AWS writes as x-SAT plus SUN.
                if slash:
                    raise ExpressionError(
                        f"cron({body}): day-of-week {term!r} with a step cannot be converted",
                        "Write the days as a list, e.g. MON,WED,FRI",
                    )
                terms.append(f"{names[0]}-SAT,SUN")
            else:
                terms.append(f"{names[0]}-{names[1]}{slash}{step}")
        else:
            terms.append(f"{day(base)}{slash}{step}")
    return ",".join(terms)


def parse_cron(body: str) -> Cron:
    fields = body.split()
    if len(fields) != 6:
        hint = (
            "AWS cron has 6 fields: minutes hours day-of-month month day-of-week year, "
            "e.g. cron(0 3 * * ? *)"
        )
        hint += " (a five-field Unix crontab line such as 0 3 * * * is converted)"
        raise ExpressionError(f"cron({body}) has {len(fields)} fields, not 6", hint)
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ExpressionError(
            f"cron({body}): exactly one of day-of-month ({dom}) and day-of-week ({dow}) must be ?",
            "For example cron(0 3 * * ? *) for every day or cron(0 3 ? * MON-FRI *) for weekdays",
        )
    return Cron(
        minutes=tuple(sorted(_values(minute, 0, body))),
        hours=tuple(sorted(_values(hour, 1, body))),
        months=frozenset(_values(month, 3, body, _MONTHS)),
        years=tuple(sorted(_values(year, 5, body))),
        day_of_month=None if dom == "?" else _day_of_month(dom, body),
        day_of_week=None if dow == "?" else _day_of_week(dow, body),
    )


def _bad(body: str, index: int, term: str, why: str) -> ExpressionError:
    low, high = _RANGES[index]
    return ExpressionError(
        f"cron({body}): {_FIELD_NAMES[index]} field {term!r} {why}",
        f"{_FIELD_NAMES[index]} takes {low}-{high}"
        + (" or JAN-DEC" if index == 3 else " or SUN-SAT (1 = SUN)" if index == 4 else ""),
    )


def _number(token: str, index: int, body: str, names: dict[str, int] | None) -> int:
    upper = token.upper()
    if names and upper in names:
        return names[upper]
    if not token.isdigit():
        raise _bad(body, index, token, "is not a number" + (" or a name" if names else ""))
    value = int(token)
    low, high = _RANGES[index]
    if not low <= value <= high:
        raise _bad(body, index, token, "is out of range")
    return value


def _values(field: str, index: int, body: str, names: dict[str, int] | None = None) -> set[int]:
    low, high = _RANGES[index]
    result: set[int] = set()
    for term in field.split(","):
        if not term:
            raise _bad(body, index, field, "has an empty list item")
        base, _, step_text = term.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(body, index, term, "has an invalid step")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, index, body, names), _number(last, index, body, names)
        else:
            start = _number(base, index, body, names)
            end = high if step_text else start  # `10/15`: from 10 to the end in steps
        span = (
            list(range(start, end + 1))
            if start <= end
            else list(range(start, high + 1)) + list(range(low, end + 1))
        )  # a wrapping range such as FRI-MON
        result.update(span[::step])
    return result


def _day_of_month(field: str, body: str) -> DayRule:
    values: set[int] = set()
    last_day = last_weekday = False
    nearest: set[int] = set()
    for term in field.split(","):
        upper = term.upper()
        if upper == "L":
            last_day = True
        elif upper == "LW":
            last_weekday = True
        elif upper.endswith("W"):
            nearest.add(_number(term[:-1], 2, body, None))
        else:
            values |= _values(term, 2, body)
    return DayRule(
        frozenset(values),
        last_day=last_day,
        last_weekday_of_month=last_weekday,
        nearest_weekday=frozenset(nearest),
    )


def _day_of_week(field: str, body: str) -> DayRule:
    values: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for term in field.split(","):
        upper = term.upper()
        if upper == "L":
            values.add(7)  # Quartz: L alone in day-of-week is the last day of the week, Saturday
        elif upper.endswith("L"):
            last_of.add(_number(term[:-1], 4, body, _WEEKDAYS))
        elif "#" in term:
            day, _, which = term.partition("#")
            if which not in {"1", "2", "3", "4", "5"}:
                raise _bad(body, 4, term, "must be day#n with n from 1 to 5")
            nth.add((_number(day, 4, body, _WEEKDAYS), int(which)))
        else:
            values |= _values(term, 4, body, _WEEKDAYS)
    return DayRule(
        frozenset(values), last_of_weekday=frozenset(last_of), nth_weekday=frozenset(nth)
    )


def _parse_rate(body: str) -> tuple[str, timedelta]:
    parts = body.split()
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) < 1:
        raise ExpressionError(
            f"rate({body}) is not rate(value unit) with a positive whole value",
            "For example rate(5 minutes), rate(1 hour) or rate(7 days)",
        )
    value, unit = int(parts[0]), parts[1].lower()
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in _RATE_UNITS:
        raise ExpressionError(
            f"rate({body}) has unit {parts[1]!r}", "The unit is minute(s), hour(s) or day(s)"
        )
    # AWS wants the singular for 1 and the plural otherwise; fix that quietly rather than reject.
    canonical = f"{value} {singular if value == 1 else singular + 's'}"
    return canonical, timedelta(seconds=value * _RATE_UNITS[singular])


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (such as Asia/Tokyo), or an ExpressionError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(
            f"schedule.timezone {name!r} is not an IANA time zone",
            "Use a name such as UTC, Asia/Tokyo or America/New_York",
        ) from None


def next_runs(
    expression: Expression,
    tz: ZoneInfo,
    count: int,
    after: datetime,
    anchor: datetime | None = None,
) -> list[datetime]:
    """The next `count` run times strictly after `after` (aware datetimes in `tz`).

    For rate expressions the runs fall at `anchor` + k x rate (AWS counts from when the schedule was
    created or last updated); without an anchor they are counted from `after`.
    """
    if count <= 0:
        return []
    if expression.kind == "at":
        assert expression.at is not None
        when = _existing(expression.at, tz)
        return [when] if when is not None and when > after else []
    if expression.kind == "rate":
        assert expression.rate is not None
        start = anchor or after
        steps = max(0, (after - start) // expression.rate + 1)
        return [(start + expression.rate * (steps + i)).astimezone(tz) for i in range(count)]
    assert expression.cron is not None
    runs: list[datetime] = []
    for when in _cron_times(expression.cron, tz, after):
        runs.append(when)
        if len(runs) == count:
            break
    return runs


def _cron_times(cron: Cron, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    start = after.astimezone(tz)
    for year in cron.years:
        if year < start.year:
            continue
        for month in sorted(cron.months):
            if (year, month) < (start.year, start.month):
                continue
            for day_number in range(1, calendar.monthrange(year, month)[1] + 1):
                day = date(year, month, day_number)
                if day < start.date() or not cron.matches_day(day):
                    continue
                for hour in cron.hours:
                    for minute in cron.minutes:
                        when = _existing(datetime(year, month, day_number, hour, minute), tz)
                        if when is not None and when > after:
                            yield when


def _existing(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """`wall` in `tz`, or None when that wall-clock time is skipped by a DST change."""
    local = wall.replace(tzinfo=tz)  # fold=0: the first of two ambiguous times, so it runs once
    round_trip = local.astimezone(UTC).astimezone(tz)
    return local if round_trip.replace(tzinfo=None) == wall else None
