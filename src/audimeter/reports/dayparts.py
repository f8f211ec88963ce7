"""Dayparts: named weekly time slots such as "Mon-Fri 06:00-10:00", in the report's time zone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY = {name[:3].lower(): index for index, name in enumerate(WEEKDAYS)}

DEFAULT_DAYPARTS: dict[str, str] = {
    # Nielsen Audio's (formerly Arbitron's) standard radio dayparts: five on weekdays, the weekend
    # daytime and evening as one, and the overnight of every day; together they cover the week once.
    "Morning drive": "Mon-Fri 06:00-10:00",
    "Midday": "Mon-Fri 10:00-15:00",
    "Afternoon drive": "Mon-Fri 15:00-19:00",
    "Evening": "Mon-Fri 19:00-24:00",
    "Weekend": "Sat-Sun 06:00-24:00",
    "Overnight": "Mon-Sun 00:00-06:00",
}

_SPEC = re.compile(r"^\s*(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)\s*$")


@dataclass(frozen=True)
class Daypart:
    name: str
    days: frozenset[int]
    """Weekdays, Monday = 0."""
    start: int
    """Minutes after local midnight, a multiple of 15."""
    end: int
    """Minutes after local midnight (up to 1440), after start."""

    def contains(self, weekday: int, minute: int) -> bool:
        return weekday in self.days and self.start <= minute < self.end


def _minutes(text: str) -> int:
    hours, minutes = int(text[:2]), int(text[3:])
    if minutes >= 60 or hours * 60 + minutes > 1440:
        raise ValueError(f"{text} is not a time of day (00:00 to 24:00)")
    if minutes % 15:
        raise ValueError(f"{text} is not on a quarter hour (:00, :15, :30 or :45)")
    return hours * 60 + minutes


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.lower().partition("-")
        if first not in _DAY or (last and last not in _DAY):
            raise ValueError(f"{part!r} is not a day or a range of days such as Mon-Fri")
        lo, hi = _DAY[first], _DAY[last or first]
        # A range may wrap past Sunday ("Sat-Mon").
        days.update((lo + i) % 7 for i in range((hi - lo) % 7 + 1))
    return frozenset(days)


def parse_daypart(name: str, spec: str) -> Daypart:
    """One daypart from DAYS HH:MM-HH:MM, DAYS a day, a range or a comma list: "Mon-Fri,Sun"."""
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f'{spec!r} is not of the form "Mon-Fri 06:00-10:00"')
    start, end = _minutes(match["start"]), _minutes(match["end"])
    if end <= start:
        raise ValueError(
            f"{spec!r} ends before it starts; split a slot across midnight into two dayparts"
        )
    return Daypart(name, _days(match["days"]), start, end)


def parse_dayparts(specs: Mapping[str, str]) -> tuple[Daypart, ...]:
    return tuple(parse_daypart(name, spec) for name, spec in specs.items())
