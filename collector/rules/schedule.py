"""Local-time schedules for the rules: is an instant inside a weekly window, when is a deadline.

Pure: every function takes the instant (``now_ms``, ms since the epoch UTC) and the city's time
zone name; nothing reads the clock. A window whose end is before its start crosses midnight
(``21:00-06:00``): it belongs to the day it starts on, so Monday 21:00-06:00 covers Tuesday 03:00.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.domain import Window
from shouhu.exceptions import ConfigError


@lru_cache(maxsize=64)
def zone(tz: str) -> ZoneInfo:
    """The zone named ``tz``; a ConfigError names it when it does not exist."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


@lru_cache(maxsize=256)
def parse_hhmm(text: str) -> time:
    """``"HH:MM"`` (00:00 to 23:59) as a time; a ConfigError otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and 1 <= len(hh) <= 2):
        raise ConfigError(f"not a HH:MM time: {text!r}")
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise ConfigError(f"not a HH:MM time: {text!r}")
    return time(h, m)


def local(now_ms: int, tz: str) -> datetime:
    """The instant as an aware local datetime."""
    return datetime.fromtimestamp(now_ms / 1000, zone(tz))


def local_day(now_ms: int, tz: str) -> str:
    """The local calendar day, ``YYYY-MM-DD``: the key of per-day rule state."""
    return local(now_ms, tz).date().isoformat()


def at_ms(day: date, hhmm: str, tz: str) -> int:
    """Milliseconds of ``hhmm`` local time on ``day`` (a DST gap resolves forward, fold=0)."""
    t = parse_hhmm(hhmm)
    naive = datetime.combine(day, t)
    aware = naive.replace(tzinfo=zone(tz))
    # A time in a spring-forward gap does not exist: round-tripping through UTC moves it forward.
    return int(aware.timestamp() * 1000)


def in_window(window: Window, now_ms: int, tz: str) -> bool:
    """Is the instant inside this weekly window (crossing midnight when end <= start)?"""
    now = local(now_ms, tz)
    start, end = parse_hhmm(window.start), parse_hhmm(window.end)
    t = now.time().replace(second=0, microsecond=0, tzinfo=None)
    today, yesterday = now.weekday(), (now.weekday() - 1) % 7
    if start < end:
        return today in window.days and start <= t < end
    # crosses midnight (or start == end: the whole 24 hours from start)
    return (today in window.days and t >= start) or (yesterday in window.days and t < end)


def in_windows(windows: Iterable[Window], now_ms: int, tz: str) -> bool:
    """Inside any of the windows."""
    return any(in_window(w, now_ms, tz) for w in windows)


def occurrences(
    windows: Iterable[Window], after_ms: int, until_ms: int, tz: str
) -> list[tuple[int, int]]:
    """Occurrences ``(start_ms, end_ms)`` of the windows whose end falls in ``(after_ms, until_ms]``.

    Used to judge a round once its window has closed; sorted by end.
    """
    found: set[tuple[int, int]] = set()
    first = local(after_ms, tz).date() - timedelta(days=1)
    last = local(until_ms, tz).date()
    for w in windows:
        start_t, end_t = parse_hhmm(w.start), parse_hhmm(w.end)
        day = first
        while day <= last:
            if day.weekday() in w.days:
                start_ms = at_ms(day, w.start, tz)
                end_day = day if start_t < end_t else day + timedelta(days=1)
                end_ms = at_ms(end_day, w.end, tz)
                if after_ms < end_ms <= until_ms:
                    found.add((start_ms, end_ms))
            day += timedelta(days=1)
    return sorted(found, key=lambda se: (se[1], se[0]))


def next_deadline(hhmm: str, now_ms: int, tz: str, days: Iterable[int] | None = None) -> int:
    """The next instant at or after ``now_ms`` when local time is ``hhmm`` on one of ``days``."""
    allowed = frozenset(range(7)) if days is None else frozenset(days)
    if not allowed:
        raise ConfigError("a deadline needs at least one weekday", field="days")
    day = local(now_ms, tz).date()
    for _ in range(8):
        if day.weekday() in allowed:
            at = at_ms(day, hhmm, tz)
            if at >= now_ms:
                return at
        day += timedelta(days=1)
    raise AssertionError("unreachable: a weekday recurs within 8 days")


def deadline_today(hhmm: str, now_ms: int, tz: str) -> int:
    """Today's (local) occurrence of ``hhmm``, past or future."""
    return at_ms(local(now_ms, tz).date(), hhmm, tz)
