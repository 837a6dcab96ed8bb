"""Transports in order of preference, each behind its own circuit breaker: the first whose
breaker is closed is tried; a transient failure or an open breaker moves on to the next. A
refusal about the message or the recipient (permanent, recipient-invalid) is final: another
transport would be refused the same way."""

from __future__ import annotations

from tidings.core.breaker import BreakerOpen, CircuitBreaker
from tidings.core.errors import TransientError
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders import EmailSender


def trips_breaker(exc: BaseException) -> bool:
    """Only a transport's own failures open its breaker, not a reply about one message."""
    return isinstance(exc, TransientError) and exc.connection_level


class FailoverSender(EmailSender):
    def __init__(self, transports: list[tuple[str, EmailSender, CircuitBreaker]]) -> None:
        assert transports, "at least one transport"
        self.transports = transports

    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        failures: list[str] = []
        waits: list[BreakerOpen] = []
        last: TransientError | None = None
        for name, sender, breaker in self.transports:
            try:
                async with breaker.guard(trips_breaker):
                    reply = await sender.send(email, envelope_from=envelope_from)
            except BreakerOpen as exc:
                waits.append(exc)
                continue
            except TransientError as exc:
                failures.append(f"{name}: {exc.message}")
                last = exc
                continue
            return reply if len(self.transports) == 1 else f"via {name}: {reply}"
        if last is not None:
            raise TransientError(
                "; ".join(failures), connection_level=last.connection_level
            ) from last
        # Every transport's breaker is open: wait for the first to half-open.
        raise min(waits, key=lambda w: w.retry_after_s)

    async def close(self) -> None:
        for _, sender, _ in self.transports:
            await sender.close()
