"""Workers render a cheap template on the event loop (no thread hand-over); a template with a
loop or a call, or one that took longer than ``ON_LOOP_MAX_S`` ``ON_LOOP_STRIKES`` times in a
row, renders in a thread; one slow render among fast ones (a garbage collection) does not."""

from __future__ import annotations

import threading
import time
import uuid

from tidings.core import rendering
from tidings.core.rendering import render_content_async


class Probe:
    """Records the thread that renders it; ``spin_s`` of CPU per rendering."""

    def __init__(self, spin_s: float = 0.0) -> None:
        self.threads: list[int] = []
        self.spin_s = spin_s

    def __str__(self) -> str:
        self.threads.append(threading.get_ident())
        end = time.thread_time() + self.spin_s
        while time.thread_time() < end:
            pass
        return "probe"


def _template(body: str) -> dict[str, str]:
    """A template never seen before: its first render compiles it (not counted as slow)."""
    # A subject of its own per test: the slow-template memory is keyed on the sources.
    return {"subject": f"s {uuid.uuid4()} {{{{ p }}}}", "body": body, "text_body": ""}


async def test_a_cheap_template_renders_on_the_loop_for_a_worker() -> None:
    template = _template("<p>{{ p }}</p>")
    for _ in range(2):  # the first render compiles: that is not counted against it
        probe = Probe()
        rendered = await render_content_async("email", template, {"p": probe}, cheap_on_loop=True)
        assert rendered["body"] == "<p>probe</p>" and rendered["text_body"] == "probe"
        assert probe.threads and set(probe.threads) == {threading.get_ident()}


async def test_a_template_with_a_loop_or_a_call_renders_in_a_thread() -> None:
    for body in (
        "{% for x in [1] %}{{ p }}{% endfor %}",
        "{{ p }}{{ range(2)|list }}{{ 'a'.upper() }}",
    ):
        probe = Probe()
        await render_content_async("email", _template(body), {"p": probe}, cheap_on_loop=True)
        assert probe.threads and threading.get_ident() not in probe.threads, body


async def test_a_template_slow_on_the_loop_time_after_time_goes_to_a_thread() -> None:
    template = _template("{{ p }}")
    for _ in range(rendering.ON_LOOP_STRIKES):
        slow = Probe(spin_s=rendering.ON_LOOP_MAX_S * 2)
        await render_content_async("email", template, {"p": slow}, cheap_on_loop=True)
        assert threading.get_ident() in slow.threads  # still on the loop
    again = Probe()
    await render_content_async("email", template, {"p": again}, cheap_on_loop=True)
    assert again.threads and threading.get_ident() not in again.threads


async def test_one_slow_render_among_fast_ones_stays_on_the_loop() -> None:
    template = _template("{{ p }}")
    for spin_s in [rendering.ON_LOOP_MAX_S * 2] * (rendering.ON_LOOP_STRIKES - 1) + [0.0] * 2:
        await render_content_async("email", template, {"p": Probe(spin_s)}, cheap_on_loop=True)
    slow = Probe(spin_s=rendering.ON_LOOP_MAX_S * 2)  # strikes were cleared by a fast one
    await render_content_async("email", template, {"p": slow}, cheap_on_loop=True)
    after = Probe()
    await render_content_async("email", template, {"p": after}, cheap_on_loop=True)
    assert set(after.threads) == {threading.get_ident()}


async def test_without_cheap_on_loop_every_render_is_in_a_thread() -> None:
    probe = Probe()
    await render_content_async("email", _template("{{ p }}"), {"p": probe})
    assert probe.threads and threading.get_ident() not in probe.threads
