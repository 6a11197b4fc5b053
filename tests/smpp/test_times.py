"""SMPP absolute and relative times (SMPP 3.4 §7.1.1)."""

from __future__ import annotations

import calendar

import pytest

from smppbridge.smpp.times import parse_smpp_time


def test_empty_is_none() -> None:
    """An empty time means "not given"."""
    assert parse_smpp_time("", 0.0) is None


def test_absolute_utc() -> None:
    """'261123200000000+' is 2026-11-23 20:00:00 UTC."""
    assert parse_smpp_time("261123200000000+", 0.0) == calendar.timegm(
        (2026, 11, 23, 20, 0, 0, 0, 0, 0))


def test_absolute_with_offset_and_tenths() -> None:
    """nn quarter hours ahead of UTC are subtracted; behind are added; t is tenths."""
    base = parse_smpp_time("261123200000000+", 0.0)
    assert base is not None
    assert parse_smpp_time("261123200000004+", 0.0) == base - 3600
    assert parse_smpp_time("261123200000008-", 0.0) == base + 7200
    assert parse_smpp_time("261123200000500+", 0.0) == base + 0.5


def test_relative() -> None:
    """'000001020304000R' is 1 day 2 h 3 min 4 s after now."""
    assert parse_smpp_time("000001020304000R", 1000.0) == 1000.0 + 86400 + 7200 + 180 + 4


@pytest.mark.parametrize("value", ["2611232000000000", "26112320000000+", "261323200000000+",
                                   "261123250000000+", "261123200000049+", "abcdefghijklmno+"])
def test_invalid(value: str) -> None:
    """Wrong length, unknown p, month 13, hour 25, offset over 12 h, letters → ValueError."""
    with pytest.raises(ValueError, match="SMPP time"):
        parse_smpp_time(value, 0.0)


def test_relative_time_is_written_in_days_and_read_back() -> None:
    """What is left of a validity goes upstream as a relative time that reads back as the
    same period, capped at 99 days 23:59:59."""
    from smppbridge.smpp.times import parse_smpp_time, relative_smpp_time

    assert relative_smpp_time(90061) == "000001010101000R"
    assert parse_smpp_time(relative_smpp_time(90061), 0.0) == 90061
    assert relative_smpp_time(0.2) == "000000000001000R"
    assert relative_smpp_time(10**9) == "000099235959000R"
