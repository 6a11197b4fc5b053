"""SMPP time values (SMPP 3.4 §7.1.1): schedule_delivery_time and validity_period.

``YYMMDDhhmmsstnnp`` — absolute when ``p`` is ``+`` or ``-`` (``nn`` quarter hours
ahead of or behind UTC, ``t`` tenths of a second), relative when ``p`` is ``R``
(``YYMMDDhhmmss`` is a period: years, months, days, ... from now; ``tnn`` is ``000``).
"""

from __future__ import annotations

import calendar
import re

__all__ = ["parse_smpp_time", "relative_smpp_time"]

_FORMAT = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d)(\d{2})([+R-])$")
_DAY = 86400
#: Relative periods count months as 30 days and years as 365 (the spec gives no
#: calendar for a period; Kannel and cloudhopper do the same).
_MONTH = 30 * _DAY
_YEAR = 365 * _DAY
_MAX_QUARTERS = 48


def parse_smpp_time(value: str, now: float) -> float | None:
    """The UNIX time ``value`` stands for, None for an empty value; ValueError if bad."""
    if not value:
        return None
    m = _FORMAT.match(value)
    if m is None:
        msg = f"not an SMPP time: {value!r}"
        raise ValueError(msg)
    yy, mo, dd, hh, mi, ss, t, nn = (int(g) for g in m.groups()[:8])
    p = m.group(9)
    if p == "R":
        return now + yy * _YEAR + mo * _MONTH + dd * _DAY + hh * 3600 + mi * 60 + ss
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 60
            and nn <= _MAX_QUARTERS):
        msg = f"SMPP time out of range: {value!r}"
        raise ValueError(msg)
    try:
        local = calendar.timegm((2000 + yy, mo, dd, hh, mi, ss, 0, 0, 0))
    except (ValueError, OverflowError) as exc:
        msg = f"SMPP time out of range: {value!r}"
        raise ValueError(msg) from exc
    offset = nn * 900
    utc = local - offset if p == "+" else local + offset
    return utc + t / 10


#: the largest relative period the format holds: 99 days, 23:59:59 (we write days, not
#: months or years, whose lengths the spec leaves open)
_MAX_RELATIVE = 99 * _DAY + 86399


def relative_smpp_time(seconds: float) -> str:
    """A relative SMPP time for a period of ``seconds`` (at least 1 s, at most 99 days
    23:59:59): ``0000DDhhmmss000R``."""
    total = min(_MAX_RELATIVE, max(1, int(seconds)))
    days, rest = divmod(total, _DAY)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"
