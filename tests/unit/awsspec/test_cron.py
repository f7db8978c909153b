"""The local evaluator of EventBridge Scheduler expressions (AWS cron dialect, rate, at)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gcpfargate.awsspec import cron
from gcpfargate.errors import ConfigError, ExitCode

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


def runs(expression: str, after: datetime, count: int = 5, tz: ZoneInfo = TOKYO) -> list[str]:
    return [when.isoformat() for when in cron.next_runs(cron.parse(expression), tz, count, after)]


def test_daily_at_three_in_tokyo() -> None:
    after = datetime(2030, 1, 30, 12, 0, tzinfo=TOKYO)
    assert runs("cron(0 3 * * ? *)", after, 3) == [
        "2030-01-31T03:00:00+09:00",
        "2030-02-01T03:00:00+09:00",
        "2030-02-02T03:00:00+09:00",
    ]


def test_after_is_exclusive_and_utc_input_is_converted() -> None:
    # 18:00 UTC is 03:00 next day in Tokyo: that exact instant is not "next".
    after = datetime(2030, 1, 30, 18, 0, tzinfo=UTC)
    assert runs("cron(0 3 * * ? *)", after, 1) == ["2030-02-01T03:00:00+09:00"]


def test_weekdays_by_name_and_aws_numbering() -> None:
    after = datetime(2030, 1, 4, 0, 0, tzinfo=TOKYO)  # a Friday
    by_name = runs("cron(30 9 ? * MON-FRI *)", after, 4)
    assert by_name == [
        "2030-01-04T09:30:00+09:00",
        "2030-01-07T09:30:00+09:00",
        "2030-01-08T09:30:00+09:00",
        "2030-01-09T09:30:00+09:00",
    ]
    # AWS counts day-of-week 1-7 from Sunday: 2-6 is MON-FRI.
    assert runs("cron(30 9 ? * 2-6 *)", after, 4) == by_name
    assert runs("cron(0 0 ? * 1 *)", after, 1) == ["2030-01-06T00:00:00+09:00"]  # Sunday


def test_lists_ranges_steps_and_months() -> None:
    after = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    assert runs("cron(0/20 8-9 1 JAN,MAR ? *)", after, 7, UTC) == [
        "2030-01-01T08:00:00+00:00",
        "2030-01-01T08:20:00+00:00",
        "2030-01-01T08:40:00+00:00",
        "2030-01-01T09:00:00+00:00",
        "2030-01-01T09:20:00+00:00",
        "2030-01-01T09:40:00+00:00",
        "2030-03-01T08:00:00+00:00",
    ]
    assert runs("cron(*/30 0 1 1 ? 2031-2032)", after, 3, UTC) == [
        "2031-01-01T00:00:00+00:00",
        "2031-01-01T00:30:00+00:00",
        "2032-01-01T00:00:00+00:00",
    ]


def test_last_day_weekday_and_nth_forms() -> None:
    after = datetime(2030, 1, 1, tzinfo=UTC)
    assert runs("cron(0 0 L * ? *)", after, 3, UTC) == [
        "2030-01-31T00:00:00+00:00",
        "2030-02-28T00:00:00+00:00",
        "2030-03-31T00:00:00+00:00",
    ]
    # Last Friday (6L) and third Monday (2#3) of January 2030.
    assert runs("cron(0 0 ? 1 6L 2030)", after, 1, UTC) == ["2030-01-25T00:00:00+00:00"]
    assert runs("cron(0 0 ? 1 MON#3 2030)", after, 1, UTC) == ["2030-01-21T00:00:00+00:00"]
    # 2030-06-15 is a Saturday: 15W is Friday the 14th; the last weekday of June 2030 is Friday the
    # 28th.
    assert runs("cron(0 0 15W 6 ? 2030)", after, 1, UTC) == ["2030-06-14T00:00:00+00:00"]
    assert runs("cron(0 0 LW 6 ? 2030)", after, 1, UTC) == ["2030-06-28T00:00:00+00:00"]


def test_daylight_saving_skips_missing_and_runs_ambiguous_once() -> None:
    # 2030-03-10 02:30 does not exist in New York; 2030-11-03 01:30 happens twice.
    spring = datetime(2030, 3, 9, 12, 0, tzinfo=NEW_YORK)
    assert runs("cron(30 2 * * ? *)", spring, 2, NEW_YORK) == [
        "2030-03-11T02:30:00-04:00",
        "2030-03-12T02:30:00-04:00",
    ]
    autumn = datetime(2030, 11, 2, 12, 0, tzinfo=NEW_YORK)
    assert runs("cron(30 1 * * ? *)", autumn, 2, NEW_YORK) == [
        "2030-11-03T01:30:00-04:00",
        "2030-11-04T01:30:00-05:00",
    ]


def test_rate_counts_from_the_anchor() -> None:
    anchor = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    after = anchor + timedelta(minutes=150)
    expression = cron.parse("rate(1 hour)")
    got = cron.next_runs(expression, TOKYO, 2, after, anchor=anchor)
    assert [g.isoformat() for g in got] == [
        "2030-01-01T12:00:00+09:00",
        "2030-01-01T13:00:00+09:00",
    ]
    assert cron.next_runs(expression, UTC, 1, after)[0] == after + timedelta(hours=1)


def test_at_runs_once_in_the_future_only() -> None:
    expression = cron.parse("at(2030-05-01T09:00:00)")
    assert [
        w.isoformat()
        for w in cron.next_runs(expression, TOKYO, 5, datetime(2030, 1, 1, tzinfo=UTC))
    ] == ["2030-05-01T09:00:00+09:00"]
    assert cron.next_runs(expression, TOKYO, 5, datetime(2031, 1, 1, tzinfo=UTC)) == []


def test_impossible_date_has_no_runs() -> None:
    assert runs("cron(0 0 30 2 ? *)", datetime(2030, 1, 1, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"cron": "0 3 * * ? *"}, "cron(0 3 * * ? *)"),
        ({"cron": "cron(0  3 * * ? *)"}, "cron(0 3 * * ? *)"),
        ({"rate": "1 hours"}, "rate(1 hour)"),
        ({"rate": "5 minute"}, "rate(5 minutes)"),
        ({"expression": "rate(2 days)"}, "rate(2 days)"),
        ({"cron": "0 3 * * *"}, "cron(0 3 * * *)"),
        ({"cron": "@daily"}, "@daily"),
        ({"expression": "at(2030-01-31T09:00:00)"}, "at(2030-01-31T09:00:00)"),
        ({}, None),
    ],
)
def test_flags_are_canonicalised(flags: dict[str, str], expected: str | None) -> None:
    assert cron.from_flags(**flags) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0 3 * * *", "is not cron(...)"),
        ("cron(0 3 * *)", "has 4 fields, not 6"),
        ("cron(0 3 1 * MON)", "OR day-of-week"),
        ("cron(0 3 * * 8)", "day-of-week '8' is not 0-7"),
        ("@reboot", "not a cron macro"),
        ("cron(0 3 * * * *)", "exactly one of day-of-month"),
        ("cron(0 3 ? * ? *)", "exactly one of day-of-month"),
        ("cron(61 3 * * ? *)", "minutes field '61' is out of range"),
        ("cron(0 3 ? * FUNDAY *)", "day-of-week field 'FUNDAY' is not a number or a name"),
        ("cron(0 3 ? * 0 *)", "day-of-week field '0' is out of range"),
        ("cron(0/0 3 * * ? *)", "invalid step"),
        ("cron(0 3 ? * 6#6 *)", "day#n"),
        ("rate(0 hours)", "positive whole value"),
        ("rate(1 week)", "unit 'week'"),
        ("rate(hour)", "rate(value unit)"),
        ("at(2030-02-30T00:00:00)", "not a valid date"),
        ("at(tomorrow)", "yyyy-mm-ddThh:mm:ss"),
    ],
)
def test_invalid_expressions_are_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(cron.ExpressionError) as info:
        cron.parse(text)
    assert fragment in info.value.message
    assert isinstance(info.value, ConfigError) and info.value.exit_code == ExitCode.USAGE


def test_two_expression_flags_exclude_each_other() -> None:
    with pytest.raises(cron.ExpressionError, match="--cron and --rate exclude each other"):
        cron.from_flags(cron="0 3 * * ? *", rate="1 hour")


def test_time_zone_validation() -> None:
    assert cron.zone("Asia/Tokyo") == TOKYO
    for bad in ("Asia/Tokio", "../etc/passwd", "JST+9"):
        with pytest.raises(cron.ExpressionError, match="not an IANA time zone"):
            cron.zone(bad)


@pytest.mark.parametrize(
    ("written", "aws"),
    [
        ("cron(0 3 * * *)", "cron(0 3 * * ? *)"),
        ("cron(*/15 * 1 * *)", "cron(*/15 * 1 * ? *)"),
        ("cron(0 9 * * 1-5)", "cron(0 9 ? * MON-FRI *)"),
        ("cron(0 9 * * 0,6)", "cron(0 9 ? * SUN,SAT *)"),
        ("cron(0 9 * * 7)", "cron(0 9 ? * SUN *)"),
        ("cron(0 9 * * 5-7)", "cron(0 9 ? * FRI-SAT,SUN *)"),
        ("cron(0 9 * * */2)", "cron(0 9 ? * 1/2 *)"),
        ("cron(0 9 * * fri)", "cron(0 9 ? * FRI *)"),
        ("cron(0 9 ? * 2)", "cron(0 9 ? * 2 *)"),
        ("@daily", "cron(0 0 * * ? *)"),
        ("@midnight", "cron(0 0 * * ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
        ("@weekly", "cron(0 0 ? * SUN *)"),
        ("@monthly", "cron(0 0 1 * ? *)"),
        ("@yearly", "cron(0 0 1 1 ? *)"),
        ("@annually", "cron(0 0 1 1 ? *)"),
    ],
)
def test_unix_cron_and_macros_become_the_six_aws_fields(written: str, aws: str) -> None:
    expression = cron.parse(written)
    assert (expression.text, expression.written, expression.converted) == (aws, written, True)


def test_unix_weekday_numbers_keep_their_days() -> None:
    after = datetime(2030, 1, 1, tzinfo=UTC)  # a Tuesday
    runs = cron.next_runs(cron.parse("cron(0 9 * * */2)"), ZoneInfo("UTC"), 4, after)
    # Unix */2 in day-of-week is 0,2,4,6: Sunday, Tuesday, Thursday, Saturday.
    assert [when.strftime("%a") for when in runs] == ["Tue", "Thu", "Sat", "Sun"]
    assert not cron.parse("cron(0 3 * * ? *)").converted
