"""The user's say at acceptance, in one place: whether a notification goes now, is skipped
(and by which rule: the history names it), or waits until the user's quiet hours end.

The rules, in order:
1. the channel's preference (the specification's ``{email, push}``) off: skipped;
2. the notification's category (its template's) off for this channel: skipped; a critical
   category cannot be turned off, so a choice for it is not read;
3. inside the user's quiet hours: scheduled until the window ends in the user's time zone
   (never dropped), unless the priority reaches the priority lane or the category is
   critical.

Times: the window is local wall-clock time, computed with zoneinfo, so across a DST change
its end is the local time asked for (07:00 is 07:00 whatever the offset). A local time that
does not exist that night (inside the spring-forward gap) is read with the offset before the
change, i.e. the first instant after the gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tidings.core.db import utcnow

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Decision:
    """``skip``: the rule that skipped it; ``hold_until``: the quiet hours' end (UTC) and
    ``reason`` the history's line; neither: it goes."""

    skip: str | None = None
    hold_until: dt.datetime | None = None
    reason: str | None = None


GOES = Decision()


def _local(day: dt.date, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, at, tzinfo=zone).astimezone(dt.UTC)


def quiet_until(
    at: dt.datetime,
    zone: ZoneInfo,
    start: dt.time,
    end: dt.time,
    days: frozenset[str] | None = None,
) -> dt.datetime | None:
    """When the quiet window that ``at`` falls in ends (UTC), or None if it falls in none.
    ``days``: the weekdays a window may start on (None: every day)."""
    today = at.astimezone(zone).date()
    overnight = end <= start
    for back in (1, 0):  # an overnight window of yesterday may still be running
        day = today - dt.timedelta(days=back)
        if days is not None and WEEKDAYS[day.weekday()] not in days:
            continue
        begins = _local(day, start, zone)
        ends = _local(day + dt.timedelta(days=1 if overnight else 0), end, zone)
        if begins <= at < ends:
            return ends
    return None


def category_choice(user: dict[str, Any], category: str | None, channel: str) -> bool | None:
    """The user's choice for ``category`` on ``channel``: True, False or None (none made)."""
    if category is None:
        return None
    choice = user.get("preferences", {}).get("categories", {}).get(category, {})
    value = choice.get(channel)
    return value if isinstance(value, bool) else None


class PreferenceRules:
    """The decision (module docstring). ``clock``: now, as an aware UTC datetime (tests set
    it: no test waits for a night to pass)."""

    def __init__(self, priority_lane_min: int, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.priority_lane_min = priority_lane_min
        self.clock = clock

    def decide(
        self,
        channel: str,
        user: dict[str, Any],
        template: dict[str, Any],
        priority: int,
        send_at: dt.datetime | None = None,
    ) -> Decision:
        if not user.get("preferences", {}).get(channel, False):
            return Decision(skip=f"the user's {channel} preference is off")
        category = template.get("category")
        critical = bool(template.get("critical", False))
        if not critical and category_choice(user, category, channel) is False:
            return Decision(skip=f"the user's {channel} preference for {category} is off")
        hours = user.get("quiet_hours")
        if not hours or critical or priority >= self.priority_lane_min:
            return GOES
        zone_name = user.get("time_zone") or "UTC"
        zone = ZoneInfo(zone_name)
        now = self.clock()
        at = send_at if send_at is not None and send_at > now else now
        start, end = dt.time.fromisoformat(hours["start"]), dt.time.fromisoformat(hours["end"])
        days = hours.get("days")
        until = quiet_until(at, zone, start, end, None if days is None else frozenset(days))
        if until is None:
            return GOES
        local = until.astimezone(zone)
        window = f"{start:%H:%M}-{end:%H:%M} {zone_name}"
        return Decision(
            hold_until=until,
            reason=f"scheduled for {until:%Y-%m-%dT%H:%M:%SZ}: inside the user's quiet hours "
            f"({window}), held until {local:%Y-%m-%d %H:%M} local time",
        )
