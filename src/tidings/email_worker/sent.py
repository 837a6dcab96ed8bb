"""The email as sent: after the mail server took a message, its raw source (headers, text
and HTML parts, as signed) is kept in the worker's store for ``sent_mail_keep_s`` (default
three days) so the dashboard can show it as the recipient saw it; a bounded job drops older
ones every ``sent_mail_purge_every_s`` (a minute), ``sent_mail_purge_batch`` (a thousand) at
most each time. The gateway reads it at
GET /api/v1/email/sent/{notification_id}/ with the service token (docs/decisions.md: what
is kept, for how long, and why).

Keeping it never holds a delivery up: a store that is away only loses the copy."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any, cast

from fastapi import APIRouter, Request
from sqlalchemy import Table, delete, select, tuple_

from tidings.core.auth import same_secret
from tidings.core.batching import Batcher
from tidings.core.bulk import insert_rows
from tidings.core.db import Database, utcnow
from tidings.core.deliveries.models import SentMessage
from tidings.core.envelope import ok
from tidings.core.errors import NotFound, Unauthorized
from tidings.core.openapi import errors
from tidings.core.tasks import Periodic

log = logging.getLogger(__name__)
SENT = cast(Table, SentMessage.__table__)


class SentMail:
    def __init__(self, db: Database, keep_s: float, *, every_s: float, batch: int) -> None:
        self.db = db
        self.keep_s = keep_s
        self.batch = batch
        self._writes: Batcher[dict[str, Any], None] = Batcher(self._write)
        # A large backlog goes a batch a look at most: bounded work.
        self._purging = Periodic("sent-mail-purge", self.purge, every_s)

    async def record(self, notification_id: str, round_: int, attempt: int, raw: bytes) -> None:
        if self.keep_s <= 0:
            return
        row = {
            "notification_id": notification_id,
            "round": round_,
            "attempt": attempt,
            "raw": raw,
            "created_at": utcnow(),
        }
        try:  # concurrent sends' copies in one statement (core.batching)
            await self._writes.submit(row)
        except Exception:  # the copy is for the dashboard: never a failed delivery
            log.warning("the sent copy of %s was not kept", notification_id, exc_info=True)

    async def _write(self, rows: list[dict[str, Any]]) -> list[None]:
        # One row per (notification, round): a retry's copy replaces the one before.
        unique = {(r["notification_id"], r["round"]): r for r in rows}
        # One statement for the batch (core.bulk), committed on its own: one round trip.
        async with self.db.autocommit.connect() as conn:
            await insert_rows(
                conn, SENT, list(unique.values()), upsert=("notification_id", "round")
            )
        return [None] * len(rows)

    async def latest(self, notification_id: str) -> SentMessage:
        async with self.db.sessions() as session:
            row = await session.scalar(
                select(SentMessage)
                .where(SentMessage.notification_id == notification_id)
                .order_by(SentMessage.round.desc())
                .limit(1)
            )
        if row is None:
            raise NotFound(f"no sent copy of {notification_id} (not sent, or older than kept)")
        return row

    async def purge(self) -> int:
        """Drop up to ``batch`` copies older than ``keep_s``; how many went."""
        cutoff = utcnow() - dt.timedelta(seconds=self.keep_s)
        async with self.db.sessions() as session, session.begin():
            old = (
                await session.execute(
                    select(SentMessage.notification_id, SentMessage.round)
                    .where(SentMessage.created_at < cutoff)
                    .limit(self.batch)
                )
            ).all()
            if old:  # one statement for the batch, by primary key
                key = tuple_(SentMessage.notification_id, SentMessage.round)
                await session.execute(delete(SentMessage).where(key.in_([tuple(r) for r in old])))
        return len(old)

    def start(self) -> None:
        self._purging.start()

    async def stop(self) -> None:
        await self._purging.stop()


def sent_router(service_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/api/v1/email", tags=["sent"])

    # 401: the service token is checked here, not by core.access (the email worker keeps no
    # API keys), so the schema is told of it by hand.
    @router.get("/sent/{notification_id}/", responses=errors(401))
    async def sent_copy(request: Request, notification_id: str) -> dict[str, Any]:
        """The newest sent copy of a notification's email, for the gateway's dashboard (the
        service token only): its raw source in base64."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not service_token or not same_secret(given, service_token):
            raise Unauthorized("the service token only")
        store: SentMail | None = getattr(request.app.state, "sent_mail", None)
        if store is None:
            raise NotFound("the email worker is starting")
        row = await store.latest(notification_id[:64])
        return ok(
            {
                "notification_id": row.notification_id,
                "round": row.round,
                "attempt": row.attempt,
                "created_at": row.created_at.isoformat(),
                "raw": base64.b64encode(row.raw).decode(),
            }
        )

    return router
