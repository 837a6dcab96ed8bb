"""Topics and their subscribers, in the gateway's database next to the fan-out that pages
through them (docs/decisions.md, "Topics and broadcasts"). A topic's key is its owner's own
(the client application's, as its request ids are). Subscribers are user ids; adding and
removing take up to 10,000 at once, each call one statement, idempotent."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import Table, delete, func, select, text

from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, NotFound
from tidings.core.limits import Storable
from tidings.gateway.models import Topic, TopicSubscriber

MAX_SUBSCRIBERS_PER_CALL = 10_000

TopicKey = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[\w.:-]+$"),
]


class TopicCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key": "product-news", "name": "Product news"}]},
    )
    key: TopicKey
    name: Annotated[str, StringConstraints(min_length=1, max_length=200), Storable]


class TopicOut(BaseModel):
    topic_id: uuid.UUID
    key: str
    name: str
    created_at: dt.datetime
    # Counted for one topic's read (GET …/{key}/), not in listings.
    subscribers: int | None = None


class SubscribersChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"user_ids": ["5f0c7c2e-8f7e-4d47-9a55-3b9b6a3f5d10"]}]},
    )
    user_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_SUBSCRIBERS_PER_CALL)]


class SubscribersChanged(BaseModel):
    topic_key: str
    requested: int
    # How many were not subscribed before (added) or were (removed): a repeat changes 0.
    changed: int


class SubscriberOut(BaseModel):
    user_id: uuid.UUID
    subscribed_at: dt.datetime


class SubscriberPage(BaseModel):
    """One page in user-id order; ``next_after``: the ``after`` of the next page (None: last)."""

    subscribers: list[SubscriberOut]
    next_after: uuid.UUID | None


def topic_out(t: Topic, subscribers: int | None = None) -> TopicOut:
    return TopicOut(
        topic_id=t.id, key=t.key, name=t.name, created_at=t.created_at, subscribers=subscribers
    )


class Topics:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, body: TopicCreate, owner: str) -> TopicOut:
        table = cast(Table, Topic.__table__)
        row = {"id": uuid.uuid4(), "owner": owner, "key": body.key, "name": body.name}
        row["created_at"] = utcnow()
        async with self._db.engine.begin() as conn:
            made = await conn.execute(
                self._db.insert(table)
                .values(row)
                .on_conflict_do_nothing(index_elements=[table.c.owner, table.c.key])
            )
        if not made.rowcount:
            raise Conflict(f"topic {body.key!r} exists already")
        return TopicOut(
            topic_id=row["id"], key=body.key, name=body.name, created_at=row["created_at"]
        )

    async def get(self, key: str, owner: str) -> Topic:
        async with self._db.statements() as session:
            found = await session.scalar(
                select(Topic).where(Topic.owner == owner, Topic.key == key)
            )
        if found is None:
            raise NotFound(f"topic {key!r} not found")
        return found

    async def describe(self, key: str, owner: str) -> TopicOut:
        topic = await self.get(key, owner)
        async with self._db.statements() as session:
            count = await session.scalar(
                select(func.count()).where(TopicSubscriber.topic_id == topic.id)
            )
        return topic_out(topic, int(count or 0))

    async def listing(self, owner: str, user_id: uuid.UUID | None) -> list[TopicOut]:
        """The owner's topics, by key; with ``user_id``: those the user is subscribed to."""
        query = select(Topic).where(Topic.owner == owner).order_by(Topic.key).limit(1000)
        if user_id is not None:
            query = query.join(TopicSubscriber, TopicSubscriber.topic_id == Topic.id).where(
                TopicSubscriber.user_id == user_id
            )
        async with self._db.statements() as session:
            return [topic_out(t) for t in await session.scalars(query)]

    async def subscribe(self, key: str, owner: str, user_ids: list[uuid.UUID]) -> int:
        """Subscribe ``user_ids`` (one INSERT … ON CONFLICT DO NOTHING); how many were new."""
        topic = await self.get(key, owner)
        table = cast(Table, TopicSubscriber.__table__)
        now = utcnow()
        distinct = list(set(user_ids))
        async with self._db.engine.begin() as conn:
            if self._db.is_postgres:
                # The ids as one array parameter: a VALUES list of 10,000 rows cost seconds
                # to compile and bind; this is one parameter whatever the count.
                done = await conn.execute(
                    text(
                        "INSERT INTO topic_subscribers (topic_id, user_id, created_at)"
                        " SELECT :topic, u, :now FROM unnest(CAST(:ids AS uuid[])) AS u"
                        " ON CONFLICT DO NOTHING"
                    ),
                    {"topic": topic.id, "now": now, "ids": distinct},
                )
            else:
                rows = [{"topic_id": topic.id, "user_id": u, "created_at": now} for u in distinct]
                done = await conn.execute(
                    self._db.insert(table).values(rows).on_conflict_do_nothing()
                )
        return int(done.rowcount or 0)

    async def unsubscribe(self, key: str, owner: str, user_ids: list[uuid.UUID]) -> int:
        topic = await self.get(key, owner)
        async with self._db.engine.begin() as conn:
            done = await conn.execute(
                delete(TopicSubscriber).where(
                    TopicSubscriber.topic_id == topic.id,
                    TopicSubscriber.user_id.in_(set(user_ids)),
                )
            )
        return int(done.rowcount or 0)

    async def subscribers(
        self, key: str, owner: str, after: uuid.UUID | None, limit: int
    ) -> SubscriberPage:
        topic = await self.get(key, owner)
        ids = await self.page(topic.id, after, limit, with_time=True)
        return SubscriberPage(
            subscribers=[SubscriberOut(user_id=u, subscribed_at=t) for u, t in ids],
            next_after=ids[-1][0] if len(ids) == limit else None,
        )

    async def page(
        self, topic_id: uuid.UUID, after: uuid.UUID | None, limit: int, *, with_time: bool = False
    ) -> list[tuple[uuid.UUID, dt.datetime]]:
        """The next ``limit`` subscribers after ``after``, by the primary key (keyset: the
        same cost on the first page and the millionth)."""
        t = TopicSubscriber
        query = select(t.user_id, t.created_at).where(t.topic_id == topic_id)
        if after is not None:
            query = query.where(t.user_id > after)
        query = query.order_by(t.user_id).limit(limit)
        async with self._db.statements() as session:
            return [(r[0], r[1]) for r in (await session.execute(query)).all()]
