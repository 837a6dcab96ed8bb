"""The decision at acceptance (gateway.preferences) on its own: quiet hours in the user's
time zone, across the DST nights of Europe/Berlin (2026-03-29 and 2026-10-25), and the rules
that bypass them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tidings.gateway.preferences import PreferenceRules, quiet_until

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
NIGHT = (dt.time(22), dt.time(7))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("at", "ends"),
    [
        # Tokyo has no DST: 23:00 JST (14:00Z) → 07:00 JST (22:00Z).
        (utc(2027, 1, 14, 14), utc(2027, 1, 14, 22)),
        # 06:59 JST is still quiet; 07:00 is not, nor 21:59.
        (utc(2027, 1, 14, 21, 59), utc(2027, 1, 14, 22)),
        (utc(2027, 1, 14, 22), None),
        (utc(2027, 1, 14, 12, 59), None),
    ],
)
def test_tokyo(at: dt.datetime, ends: dt.datetime | None) -> None:
    assert quiet_until(at, TOKYO, *NIGHT) == ends


def test_berlin_spring_forward_night_2026_03_29() -> None:
    # 23:00 CET (+01:00) on the 28th; the night is an hour short: 07:00 CEST (+02:00).
    ends = quiet_until(utc(2026, 3, 28, 22), BERLIN, *NIGHT)
    assert ends == utc(2026, 3, 29, 5)
    assert ends is not None and ends.astimezone(BERLIN).hour == 7
    # Inside the gap itself (02:30 local does not exist; 01:30Z is 03:30 CEST): still quiet.
    assert quiet_until(utc(2026, 3, 29, 1, 30), BERLIN, *NIGHT) == utc(2026, 3, 29, 5)
    # A window ending at 02:30, a time that night does not have: it ends right after the gap.
    assert quiet_until(utc(2026, 3, 28, 23), BERLIN, dt.time(22), dt.time(2, 30)) == utc(
        2026, 3, 29, 1, 30
    )


def test_berlin_fall_back_night_2026_10_25() -> None:
    # 23:00 CEST (+02:00) on the 24th; the night is an hour long: 07:00 CET (+01:00).
    ends = quiet_until(utc(2026, 10, 24, 21), BERLIN, *NIGHT)
    assert ends == utc(2026, 10, 25, 6)
    assert ends is not None and ends.astimezone(BERLIN).hour == 7
    # 02:30 happens twice that night; both are quiet, and both end at the same 07:00.
    first, second = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
    assert first.astimezone(BERLIN).hour == second.astimezone(BERLIN).hour == 2
    assert quiet_until(first, BERLIN, *NIGHT) == quiet_until(second, BERLIN, *NIGHT) == ends
    # 05:30Z is 06:30 CET: still quiet (it would be 07:30 at the summer offset).
    assert quiet_until(utc(2026, 10, 25, 5, 30), BERLIN, *NIGHT) == ends


def test_days_name_the_night_a_window_starts() -> None:
    # 2027-01-14 is a Thursday: a window on Thursdays covers Friday's early hours too.
    thursday_night = utc(2027, 1, 14, 14)  # 23:00 JST Thursday
    friday_early = utc(2027, 1, 14, 20)  # 05:00 JST Friday
    only_thu = frozenset({"thu"})
    assert quiet_until(thursday_night, TOKYO, *NIGHT, only_thu) == utc(2027, 1, 14, 22)
    assert quiet_until(friday_early, TOKYO, *NIGHT, only_thu) == utc(2027, 1, 14, 22)
    assert quiet_until(thursday_night, TOKYO, *NIGHT, frozenset({"fri"})) is None


def _user(**extra: object) -> dict[str, object]:
    return {
        "preferences": {"email": True, "push": True},
        "time_zone": "Asia/Tokyo",
        "quiet_hours": {"start": "22:00:00", "end": "07:00:00", "days": None},
        **extra,
    }


def test_rules_hold_bypass_and_skip() -> None:
    rules = PreferenceRules(priority_lane_min=7, clock=lambda: utc(2027, 1, 14, 14))
    plain = {"category": "product", "critical": False}
    held = rules.decide("email", _user(), plain, priority=5)
    assert held.skip is None and held.hold_until == utc(2027, 1, 14, 22)
    assert held.reason is not None and "quiet hours (22:00-07:00 Asia/Tokyo)" in held.reason
    assert "2027-01-15 07:00 local" in held.reason
    # The priority lane and a critical category go at once.
    assert rules.decide("email", _user(), plain, priority=9).hold_until is None
    critical = {"category": "security", "critical": True}
    assert rules.decide("email", _user(), critical, priority=1).hold_until is None
    # send_at: the window is read at the time it is to go.
    morning = rules.decide("email", _user(), plain, priority=5, send_at=utc(2027, 1, 15, 1))
    assert morning.hold_until is None
    # No time zone: UTC. No quiet hours: as before.
    assert rules.decide("email", _user(time_zone=None), plain, 5).hold_until is None
    assert rules.decide("email", _user(quiet_hours=None), plain, 5).hold_until is None
    # A category turned off is skipped, unless it is critical.
    off = _user(
        preferences={"email": True, "push": True, "categories": {"security": {"email": False}}}
    )
    assert rules.decide("email", off, {"category": "security", "critical": False}, 5).skip
    assert rules.decide("email", off, critical, 5).skip is None
