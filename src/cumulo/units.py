"""What users type for a duration, a size or a point in time, read one way everywhere.

The CLI, the SDK and the REST API all parse these values with the functions here, so
``--max-runtime 1h30m``, ``expires_in="1h30m"`` and ``{"idle_timeout": "1h30m"}`` mean the
same thing. Each raises :class:`cumulo.errors.Invalid` with a message that names the value
and shows forms that work.

>>> parse_duration("1h30m")
5400.0
>>> parse_size("512MiB")
536870912
>>> format_duration(5400)
'1h30m'
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta

from cumulo.errors import Invalid

__all__ = ["day_of", "format_duration", "parse_duration", "parse_size", "parse_time"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_PARTS = re.compile(rf"(?:{_PART.pattern}\s*)+", re.IGNORECASE)
_BARE = re.compile(_NUMBER)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CENTURY = 100 * 365 * 86400  # beyond any sensible setting, and far below timedelta's limit
_DURATION_FORMS = "use forms like 90s, 30m, 1h30m, 7d, 2w"

_SIZE = re.compile(rf"({_NUMBER})\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_BYTES = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE_FORMS = "use forms like 512M, 8G, 1.5GiB or a number of bytes"
_MAX_SIZE = 2**60  # 1024 PiB

_TIME_FORMS = ("use a date like 2026-11-01, a time like 2026-11-01T12:00:00Z, or a span back "
               "from now like 7d or 1h30m")


def _subject(what: str, kind: str, text: object) -> str:
    """How an error names the value: ``--max-runtime '5x'``, or just ``'5x'`` when ``what``
    is only the kind of value the message goes on to name."""
    return repr(text) if what == kind else f"{what} {text!r}"


def parse_duration(text: str | float, *, what: str = "duration", allow_zero: bool = False,
                   maximum: float | None = None) -> float:
    """Seconds in ``text``: a bare number of seconds, or ``<number><unit>`` parts with units
    ms, s, m, h, d and w (``90s``, ``30m``, ``1h30m``, ``1.5h``, ``7d``, ``2w``).

    ``what`` names the value in errors (an option such as ``--max-runtime``). Zero is refused
    unless ``allow_zero``; anything over ``maximum`` seconds (default a hundred years) too.

    >>> parse_duration("1h 30m"), parse_duration("250ms"), parse_duration(45)
    (5400.0, 0.25, 45.0)
    """
    subject = _subject(what, "duration", text)
    bad = Invalid(f"{subject} is not a duration: {_DURATION_FORMS}")
    if isinstance(text, bool):  # a bool is an int to Python, never a duration to a person
        raise bad
    if isinstance(text, int | float):
        try:
            seconds = float(text)
        except OverflowError:  # an int past any float: too long by far
            seconds = math.inf
    elif _BARE.fullmatch(stripped := str(text).strip()):
        seconds = float(stripped)
    elif _PARTS.fullmatch(stripped):
        seconds = sum(float(n) * _SECONDS[u.lower()] for n, u in _PART.findall(stripped))
    else:
        raise bad
    if math.isnan(seconds):
        raise bad
    if seconds < 0 or (seconds == 0 and not allow_zero):
        floor = "of 0 or more" if allow_zero else "longer than zero"
        raise Invalid(f"{subject} must be a duration {floor}: {_DURATION_FORMS}")
    limit = _CENTURY if maximum is None else maximum
    if seconds > limit:
        over = "a hundred years" if maximum is None else format_duration(limit)
        raise Invalid(f"{subject} is too long: a duration may not be over {over}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest form :func:`parse_duration` reads back: ``90`` -> ``'1m30s'``,
    ``5400`` -> ``'1h30m'``, ``0.25`` -> ``'250ms'``, ``0`` -> ``'0s'``.

    >>> format_duration(90), format_duration(7 * 86400), format_duration(1.5)
    ('1m30s', '7d', '1s500ms')
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    left = round(seconds * 1000)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Bytes in ``text``: a number of bytes, or a number with K, M, G or T (powers of 1024),
    optionally followed by B or iB, in any case (``512M``, ``8G``, ``1.5GiB``, ``4gb``).

    >>> parse_size("8G"), parse_size("2048"), parse_size(4096)
    (8589934592, 2048, 4096)
    """
    subject = _subject(what, "size", text)
    if isinstance(text, bool):
        raise Invalid(f"{subject} is not a size: {_SIZE_FORMS}")
    if isinstance(text, int):
        size: float = text
    elif match := _SIZE.fullmatch(str(text).strip()):
        size = float(match.group(1)) * _BYTES[match.group(2).upper()]
    else:
        raise Invalid(f"{subject} is not a size: {_SIZE_FORMS}")
    if size <= 0:
        raise Invalid(f"{subject} must be more than zero bytes")
    if size > _MAX_SIZE:  # inf included: past what any machine, or a BIGINT column, holds
        raise Invalid(f"{subject} is too large: a size may not be over 1024P")
    return int(size)


def parse_time(text: str, *, now: datetime | None = None, what: str = "time") -> datetime:
    """The moment ``text`` names, in UTC: an ISO date (``2026-11-01``, its midnight), an ISO
    timestamp (``2026-11-01T12:00:00Z``; one without an offset is taken as UTC), or a
    duration meaning that long before ``now`` (``7d``, ``1h30m``).

    >>> parse_time("2026-11-01T14:00:00+02:00")
    datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> parse_time("1h30m", now=datetime(2026, 11, 1, 12, tzinfo=UTC))
    datetime.datetime(2026, 11, 1, 10, 30, tzinfo=datetime.timezone.utc)
    """
    stripped = str(text).strip()
    if _PARTS.fullmatch(stripped):  # a span back from now; a bare number is not one here
        span = parse_duration(stripped, what=what, allow_zero=True)
        return (now or datetime.now(UTC)).astimezone(UTC) - timedelta(seconds=span)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
            return datetime.combine(date.fromisoformat(stripped), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(stripped.replace("z", "Z").replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one past the calendar's ends in UTC
        raise Invalid(f"{_subject(what, 'time', text)} is not a time: {_TIME_FORMS}") from None


def day_of(text: str, *, what: str = "time", now: datetime | None = None,
           start: bool = True) -> date:
    """The day (UTC) a ``--since`` (``start``) or ``--until`` names: a date, the day of a
    time, or the day a span back from now reaches. A ``--since`` of whole days counts today
    among them: ``7d`` is the last seven days, today and the six before; ``--until 2d`` ends
    on the day two days ago.

    >>> day_of("7d", now=datetime(2026, 11, 26, 12, tzinfo=UTC))
    datetime.date(2026, 11, 20)
    >>> day_of("2026-11-01T23:30:00-01:00")
    datetime.date(2026, 11, 2)
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    stripped = str(text).strip()
    if _PARTS.fullmatch(stripped):
        span = parse_duration(stripped, what=what, allow_zero=True)
        days, rest = divmod(span, 86400)
        if start and days >= 1 and rest == 0:
            return now.date() - timedelta(days=days - 1)
    try:
        return parse_time(stripped, now=now, what=what).date()
    except OverflowError:  # a span back past the calendar's start
        raise Invalid(f"{_subject(what, 'time', text)} is too far back: {_TIME_FORMS}") from None
