"""A consumer's acknowledgements in as few frames as is safe (issue #17: acks with ``multiple``).

A handler that finished marks its delivery done; the acks are sent once the loop has run the
other handlers that finished at the same moment (a group of the delivery flow ends together),
as one ``basic.ack multiple`` for the longest run of done deliveries from the oldest one
still open, plus one plain ack for each done delivery behind an open one. Those are not held
back for the open one: a slow delivery at the head must not keep the others' prefetch slots,
or one stalled send would stall the consumer.

Each delivery is settled exactly once (a second ack of a tag is a channel error). A delivery
of a channel that has since closed is dropped: its tag means nothing on the new channel, and
the broker gives the message again (at least once, as before). A requeue (``nack``) goes at
once, on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

log = logging.getLogger(__name__)


class Acks:
    def __init__(self, broker_errors: tuple[type[BaseException], ...]) -> None:
        self._errors = broker_errors
        self._channel: Any = None
        self._open: deque[int] = deque()  # tags in delivery order, not yet sent
        self._done: dict[int, AbstractIncomingMessage] = {}
        self._settled: set[int] = set()  # nacked already: the run of done ones passes them
        self._flushing: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        self.frames = 0  # ack frames sent, for tests and the profile

    def received(self, incoming: AbstractIncomingMessage) -> None:
        if incoming.channel is not self._channel:
            # A new channel (a reconnect): the old one's deliveries come again from the broker.
            self._channel = incoming.channel
            self._open.clear()
            self._done.clear()
            self._settled.clear()
        assert incoming.delivery_tag is not None
        self._open.append(incoming.delivery_tag)

    def done(self, incoming: AbstractIncomingMessage) -> None:
        """``incoming`` was handled: ack it soon, with whatever else is done by then."""
        if incoming.channel is not self._channel or incoming.delivery_tag is None:
            return
        self._done[incoming.delivery_tag] = incoming
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def requeue(self, incoming: AbstractIncomingMessage) -> None:
        """Give ``incoming`` back to its queue, now."""
        if incoming.channel is not self._channel or incoming.delivery_tag is None:
            return
        async with self._sending:  # before any ack that counts it as settled
            self._settled.add(incoming.delivery_tag)
            with contextlib.suppress(*self._errors):
                await incoming.nack(requeue=True)

    async def _flush_soon(self) -> None:
        try:
            while True:
                await asyncio.sleep(0)  # the handlers that finished with this one mark theirs
                await self.flush()
                if not self._done:
                    break  # no await from here to the reset: a later done() starts anew
        finally:
            self._flushing = None

    async def flush(self) -> None:
        """Send the acks of everything done (also on close: nothing done is given again).
        One flush at a time: a multiple ack overtaking a plain one of a lower tag would make
        that one an unknown tag, a channel error."""
        async with self._sending:
            await self._send()

    async def _send(self) -> None:
        head: AbstractIncomingMessage | None = None
        while self._open and (self._open[0] in self._done or self._open[0] in self._settled):
            tag = self._open.popleft()
            self._settled.discard(tag)
            head = self._done.pop(tag, head)
        behind = list(self._done.values())
        self._done.clear()
        if behind:
            remaining = {m.delivery_tag for m in behind}
            self._open = deque(t for t in self._open if t not in remaining)
        with contextlib.suppress(*self._errors):
            if head is not None:
                self.frames += 1
                await head.ack(multiple=True)
            for message in behind:
                self.frames += 1
                await message.ack()
