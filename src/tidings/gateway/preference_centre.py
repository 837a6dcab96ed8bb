"""The hosted preference centre: the page an email's footer links to, reached by a signed
link (core.auth.preferences_token, with the gateway's secret; it expires), no login. It shows
the user's channels and categories as switches, the time zone and quiet hours, and saves
through the users API (PATCH /api/v1/users/{id}/) with the service credential, then
confirms. A plain HTML form: it works with the keyboard and without scripts; the one script
only moves the focus to the confirmation.

Labels come from LABELS by the user's language, English when there is none for it (English
and German so far; a language is one more entry with the same keys, a test checks them).
Not the envelope: a browser reads it."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from tidings.core.auth import read_preferences_token
from tidings.core.errors import DependencyUnavailable, InvalidInput, NotFound, TidingsError

# The dashboard's headers: no caching, no framing, no referrer (the link is the credential),
# a CSP allowing our own script only.
from tidings.gateway.dashboard_base import HEADERS
from tidings.gateway.dashboard_sessions import form_of
from tidings.gateway.dependencies import State
from tidings.gateway.pages import render, static
from tidings.gateway.preferences import WEEKDAYS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/preferences", include_in_schema=False)

CHANNELS = ("email", "push")
LABELS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Your notification preferences",
        "intro": "Choose what we send you, and when.",
        "channels": "Channels",
        "channels_hint": "Off: nothing at all on that channel.",
        "channel": {"email": "Email", "push": "Push notifications"},
        "categories": "Kinds of notification",
        "kind": "Kind",
        "always": "always on: needed for your account",
        "time": "Time zone and quiet hours",
        "time_zone": "Time zone",
        "quiet_hint": "During quiet hours we hold notifications and send them when they "
        "end (urgent ones still go). Leave both empty for none.",
        "quiet_start": "Quiet from",
        "quiet_end": "Quiet until",
        "days": "On these nights (none ticked: every night)",
        "day": {
            "mon": "Monday",
            "tue": "Tuesday",
            "wed": "Wednesday",
            "thu": "Thursday",
            "fri": "Friday",
            "sat": "Saturday",
            "sun": "Sunday",
        },
        "save": "Save preferences",
        "saved": "Your preferences are saved.",
        "invalid": "This link is not valid or has expired. The newest email we sent you has "
        "a fresh one.",
        "refused": "Not saved:",
        "unavailable": "We cannot reach your preferences right now; try again in a minute.",
    },
    "de": {
        "title": "Ihre Benachrichtigungseinstellungen",
        "intro": "Wählen Sie, was wir Ihnen senden, und wann.",
        "channels": "Kanäle",
        "channels_hint": "Aus: auf diesem Kanal gar nichts.",
        "channel": {"email": "E-Mail", "push": "Push-Benachrichtigungen"},
        "categories": "Arten von Benachrichtigungen",
        "kind": "Art",
        "always": "immer an: für Ihr Konto nötig",
        "time": "Zeitzone und Ruhezeiten",
        "time_zone": "Zeitzone",
        "quiet_hint": "In den Ruhezeiten halten wir Benachrichtigungen zurück und senden sie "
        "danach (dringende gehen trotzdem). Beide Felder leer: keine.",
        "quiet_start": "Ruhe ab",
        "quiet_end": "Ruhe bis",
        "days": "In diesen Nächten (keine angekreuzt: jede Nacht)",
        "day": {
            "mon": "Montag",
            "tue": "Dienstag",
            "wed": "Mittwoch",
            "thu": "Donnerstag",
            "fri": "Freitag",
            "sat": "Samstag",
            "sun": "Sonntag",
        },
        "save": "Einstellungen speichern",
        "saved": "Ihre Einstellungen sind gespeichert.",
        "invalid": "Dieser Link ist ungültig oder abgelaufen. Die neueste E-Mail von uns "
        "enthält einen neuen.",
        "refused": "Nicht gespeichert:",
        "unavailable": "Ihre Einstellungen sind gerade nicht erreichbar; versuchen Sie es in "
        "einer Minute noch einmal.",
    },
}
_ZONES = sorted(available_timezones())
_SCRIPT = static("preference_centre.js")


def labels_for(language: str) -> tuple[str, dict[str, Any]]:
    """The labels for ``language`` ("fr-CA" → fr-CA, fr), else English; and its code."""
    for code in (language, language.split("-", 1)[0]):
        if code in LABELS:
            return code, LABELS[code]
    return "en", LABELS["en"]


def _page(status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("error", None)
    context.setdefault("saved", False)
    return HTMLResponse(render("preference_centre.html", **context), status, headers=HEADERS)


def _invalid() -> HTMLResponse:
    lang, text = labels_for("en")
    return _page(400, lang=lang, t=text, user=None)


def _user_of(state: State, token: str) -> uuid.UUID | None:
    try:
        return read_preferences_token(state.access.secret_key, token)
    except TidingsError:
        return None


async def _categories(state: State) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await state.templates_client.get(
        "/api/v1/templates/categories/", params={"limit": "100"}
    )
    return found


async def _show(
    state: State, token: str, user_id: uuid.UUID, status: int = 200, **extra: Any
) -> HTMLResponse:
    user: dict[str, Any] = await state.users_client.get(f"/api/v1/users/{user_id}/")
    lang, text = labels_for(str(user.get("language") or "en"))
    prefs = user.get("preferences") or {}
    chosen = prefs.get("categories") or {}
    categories = [
        {
            **c,
            "on": {ch: c["critical"] or chosen.get(c["key"], {}).get(ch, True) for ch in CHANNELS},
        }
        for c in await _categories(state)
    ]
    hours = user.get("quiet_hours") or {}
    return _page(
        status,
        lang=lang,
        t=text,
        user=user,
        token=token,
        channels=CHANNELS,
        channel_on={ch: bool(prefs.get(ch)) for ch in CHANNELS},
        categories=categories,
        zones=_ZONES,
        zone=user.get("time_zone") or "UTC",
        quiet_start=str(hours.get("start", ""))[:5],
        quiet_end=str(hours.get("end", ""))[:5],
        days=WEEKDAYS,
        days_on=set(hours.get("days") or ()),
        **extra,
    )


def change_of(form: dict[str, str], categories: list[dict[str, Any]]) -> dict[str, Any]:
    """The PATCH body a submitted form asks for (an unticked box is absent: off). Critical
    categories are not sent: they cannot be turned off."""
    start, end = form.get("quiet_start", "").strip(), form.get("quiet_end", "").strip()
    days = [d for d in WEEKDAYS if form.get(f"day_{d}")]
    return {
        "preferences": {
            **{ch: bool(form.get(ch)) for ch in CHANNELS},
            "categories": {
                c["key"]: {ch: bool(form.get(f"{c['key']}.{ch}")) for ch in CHANNELS}
                for c in categories
                if not c["critical"]
            },
        },
        "time_zone": form.get("time_zone") or None,
        "quiet_hours": (
            None if not start and not end else {"start": start, "end": end, "days": days or None}
        ),
    }


@router.get("/static/preference_centre.js")
async def script() -> Response:
    return PlainTextResponse(_SCRIPT, media_type="text/javascript", headers=HEADERS)


@router.get("/{token}/", response_class=HTMLResponse)
async def centre(token: str, state: State, saved: bool = False) -> HTMLResponse:
    user_id = _user_of(state, token)
    if user_id is None:
        return _invalid()
    try:
        return await _show(state, token, user_id, saved=saved)
    except NotFound:
        return _invalid()  # the user is gone
    except DependencyUnavailable as exc:
        log.warning("preference centre: %s", exc)
        lang, text = labels_for("en")
        return _page(503, lang=lang, t=text, user=None, error=text["unavailable"])


@router.post("/{token}/", response_class=HTMLResponse)
async def save(token: str, request: Request, state: State) -> Response:
    user_id = _user_of(state, token)
    if user_id is None:
        return _invalid()
    form = await form_of(request)
    try:
        change = change_of(form, await _categories(state))
        await state.users_client.request("PATCH", f"/api/v1/users/{user_id}/", json=change)
    except InvalidInput as exc:  # nothing changed: the form again, with the reason
        try:
            return await _show(state, token, user_id, 422, error=exc.message)
        except TidingsError:
            return _invalid()
    except NotFound:
        return _invalid()
    except DependencyUnavailable as exc:
        log.warning("preference centre: %s", exc)
        lang, text = labels_for("en")
        return _page(503, lang=lang, t=text, user=None, error=text["unavailable"])
    await state.users.forget(user_id)  # the next notification sees the change
    # Post/redirect/get: a reload does not post again.
    return RedirectResponse(f"/preferences/{token}/?saved=true", 303, headers=HEADERS)
