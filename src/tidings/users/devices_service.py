"""A user's push devices: registration (validated, de-duplicated), listing, removal, and the
push worker's report that a device is dead."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import Database, utcnow
from tidings.core.errors import Conflict, NotFound
from tidings.core.ratelimit import RateLimiter
from tidings.users.devices_validation import FCM_TOKEN, check_fcm_token, check_webpush
from tidings.users.models import Device, User
from tidings.users.schemas import DeviceCreate, DeviceOut, Subscription, WebPushDeviceCreate

StatusFilter = Literal["live", "dead", "all"]


def digest(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def device_out(d: Device) -> DeviceOut:
    subscription = None
    if d.kind == "webpush":
        subscription = Subscription.model_validate(
            {"endpoint": d.address, "keys": {"p256dh": d.p256dh, "auth": d.auth}}
        )
    return DeviceOut(
        device_id=d.id,
        user_id=d.user_id,
        kind=d.kind,
        subscription=subscription,
        token=d.address if d.kind == "fcm" else None,
        source=d.source,
        status=d.status,
        dead_reason=d.dead_reason,
        dead_at=d.dead_at,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


async def upsert_device(
    session: AsyncSession,
    user_id: uuid.UUID,
    kind: str,
    address: str,
    *,
    p256dh: str | None = None,
    auth: str | None = None,
    source: str = "api",
) -> tuple[Device, bool]:
    """The device for (user, kind, address): the existing row (with fresh keys, and live
    again: registering it is the client's word that it works) or a new one. Returns it and
    whether it was created. The caller commits."""
    found = await session.scalar(
        select(Device).where(
            Device.user_id == user_id,
            Device.kind == kind,
            Device.address_sha256 == digest(address),
        )
    )
    if found is not None:
        found.p256dh, found.auth = p256dh, auth
        if found.status != "live":
            found.status, found.dead_reason, found.dead_at = "live", None, None
        found.updated_at = utcnow()
        return found, False
    now = utcnow()
    device = Device(
        id=uuid.uuid4(),
        user_id=user_id,
        kind=kind,
        address=address,
        address_sha256=digest(address),
        p256dh=p256dh,
        auth=auth,
        source=source,
        status="live",
        created_at=now,
        updated_at=now,
    )
    session.add(device)
    return device, True


async def sync_push_token(session: AsyncSession, user_id: uuid.UUID, token: str | None) -> None:
    """The specification's ``push_token`` as a device: the previous push_token device goes,
    and a token shaped like an FCM token becomes an FCM device. Any other value is kept on
    the user (as before devices existed) but is nothing a push can be sent to."""
    usable = bool(token) and FCM_TOKEN.match(token or "") is not None
    stale = delete(Device).where(Device.user_id == user_id, Device.source == "push_token")
    if usable:  # the same token again keeps its device (and its id)
        stale = stale.where(Device.address_sha256 != digest(token or ""))
    await session.execute(stale)
    if usable:
        await upsert_device(session, user_id, "fcm", token or "", source="push_token")


async def live_devices(session: AsyncSession, user_id: uuid.UUID) -> list[DeviceOut]:
    rows = await session.scalars(
        select(Device)
        .where(Device.user_id == user_id, Device.status == "live")
        .order_by(Device.created_at, Device.id)
    )
    return [device_out(d) for d in rows]


@dataclass(frozen=True)
class DeviceLimits:
    """How many devices a user may have (``max_devices``), and how often they may register
    one (``rate_per_s``, ``burst``, counted by ``limiter``; None: not limited). The values
    are the settings' (TIDINGS_MAX_DEVICES_PER_USER, TIDINGS_DEVICE_REGISTER_*)."""

    limiter: RateLimiter | None
    max_devices: int
    rate_per_s: float
    burst: int


class DeviceService:
    """A user's push devices in the users service's store: built once per app (lifespan)."""

    def __init__(self, db: Database, *, allow_insecure: bool, limits: DeviceLimits) -> None:
        self.db = db
        self.allow_insecure = allow_insecure
        self.limits = limits

    async def _user(self, session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False) -> None:
        query = select(User.id).where(User.id == user_id)
        if lock:  # registrations of one user, one at a time: the count below stays true
            query = query.with_for_update()
        if await session.scalar(query) is None:
            raise NotFound(f"user {user_id} not found")

    async def _make_room(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """With a new device added (not committed): past the cap, the oldest dead devices go
        (they are never sent to again); with not enough dead, the registration is refused."""
        await session.flush()
        count = await session.scalar(
            select(func.count()).select_from(Device).where(Device.user_id == user_id)
        )
        over = int(count or 0) - self.limits.max_devices
        if over <= 0:
            return
        dead = await session.scalars(
            select(Device.id)
            .where(Device.user_id == user_id, Device.status == "dead")
            .order_by(Device.dead_at, Device.id)
            .limit(over)
        )
        ids = list(dead)
        if len(ids) < over:
            raise Conflict(
                f"user {user_id} has {self.limits.max_devices} devices, the most allowed: "
                "delete one first"
            )
        await session.execute(delete(Device).where(Device.id.in_(ids)))

    async def register(self, user_id: uuid.UUID, body: DeviceCreate) -> tuple[DeviceOut, bool]:
        """Validate and store; returns the device and whether it is new. Registrations are
        rate limited per user (429), and a new device past the cap is refused (409)."""
        if self.limits.limiter is not None:
            await self.limits.limiter.check(
                f"devices:{user_id}",
                self.limits.rate_per_s,
                self.limits.burst,
                "device registrations for this user",
            )
        if isinstance(body, WebPushDeviceCreate):
            sub = body.subscription
            check_webpush(
                sub.endpoint, sub.keys.p256dh, sub.keys.auth, allow_insecure=self.allow_insecure
            )
            fields = {"p256dh": sub.keys.p256dh, "auth": sub.keys.auth}
            kind, address = "webpush", sub.endpoint
        else:
            check_fcm_token(body.token)
            fields, kind, address = {}, "fcm", body.token
        for _ in range(2):  # a concurrent registration of the same device wins the race once
            async with self.db.sessions() as session:
                await self._user(session, user_id, lock=True)
                device, created = await upsert_device(session, user_id, kind, address, **fields)
                try:
                    if created:
                        await self._make_room(session, user_id)
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return device_out(device), created
        raise RuntimeError("device registration raced twice")  # pragma: no cover

    async def list(
        self, user_id: uuid.UUID, status: StatusFilter, page: int, limit: int
    ) -> tuple[list[DeviceOut], int]:
        async with self.db.sessions() as session:
            await self._user(session, user_id)
            where = [Device.user_id == user_id]
            if status != "all":
                where.append(Device.status == status)
            total = await session.scalar(select(func.count()).select_from(Device).where(*where))
            rows = await session.scalars(
                select(Device)
                .where(*where)
                .order_by(Device.created_at, Device.id)
                .offset((page - 1) * limit)
                .limit(limit)
            )
            return [device_out(d) for d in rows], int(total or 0)

    async def _get(self, session: AsyncSession, user_id: uuid.UUID, device_id: uuid.UUID) -> Device:
        device = await session.get(Device, device_id)
        if device is None or device.user_id != user_id:
            raise NotFound(f"device {device_id} of user {user_id} not found")
        return device

    async def get(self, user_id: uuid.UUID, device_id: uuid.UUID) -> DeviceOut:
        async with self.db.sessions() as session:
            return device_out(await self._get(session, user_id, device_id))

    async def delete(self, user_id: uuid.UUID, device_id: uuid.UUID) -> DeviceOut:
        async with self.db.sessions() as session:
            device = await self._get(session, user_id, device_id)
            out = device_out(device)
            await session.delete(device)
            await session.commit()
            return out

    async def mark_dead(self, user_id: uuid.UUID, device_id: uuid.UUID, reason: str) -> DeviceOut:
        """Idempotent: a device already dead keeps its first reason."""
        async with self.db.sessions() as session:
            device = await self._get(session, user_id, device_id)
            if device.status != "dead":
                device.status, device.dead_reason, device.dead_at = "dead", reason, utcnow()
                await session.commit()
            return device_out(device)
