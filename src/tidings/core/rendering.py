"""Template rendering, shared by the templates service (render endpoint, validation on
save) and the workers: Jinja2's sandbox, ``{{ name }}`` syntax, StrictUndefined so a missing
variable is an error that names it, autoescape for HTML only, and compiled templates cached.
"""

from __future__ import annotations

import asyncio
import re
import time
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from tidings.core.errors import InvalidInput
from tidings.core.sandbox import (
    MAX_STRING,
    BoundedSandbox,
    Budget,
    budget,
    static_check,
)

_HTML_ENV = BoundedSandbox(autoescape=True, undefined=StrictUndefined)
_TEXT_ENV = BoundedSandbox(autoescape=False, undefined=StrictUndefined)
# What a template code may look like, here and in the templates service.
TEMPLATE_CODE_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
_UNDEFINED = re.compile(r"'([^']+)' is undefined")


def _env(html: bool) -> SandboxedEnvironment:
    return _HTML_ENV if html else _TEXT_ENV


def check_template(source: str, *, field: str = "template") -> None:
    """Refuse a template that does not parse, reaches for Python internals, or is over the
    render budget on its face (a width or a range past the bounds, nested loops over more
    than ``MAX_STEPS`` iterations).

    The sandbox already blocks ``__class__`` and friends and the budget stops the rest at
    render time; refusing them when the template is saved gives the author the error at once
    instead of at the first send.
    """
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"{field}: syntax error on line {exc.lineno}: {exc.message}") from exc
    for const in tree.find_all(nodes.Const):
        if isinstance(const.value, str) and const.value.startswith("__"):
            raise InvalidInput(f"{field}: the string {const.value!r} names an internal attribute")
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name: object
        if isinstance(node, nodes.Getattr):
            name = node.attr
        else:
            name = getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise InvalidInput(f"{field}: access to internal attribute {name!r} is not allowed")
    try:
        static_check(tree)
    except SecurityError as exc:
        raise InvalidInput(f"{field}: over the render budget: {exc}") from exc


@lru_cache(maxsize=4096)
def _compiled(source: str, html: bool) -> Any:
    return _env(html).from_string(source)


def _render(source: str, variables: dict[str, Any], html: bool) -> str:
    # Piece by piece, so an output past its bound stops the render where it crosses it.
    parts: list[str] = []
    size = 0
    for part in _compiled(source, html).generate(variables):
        size += len(part)
        if size > MAX_STRING:
            raise SecurityError(f"over the render budget: output past {MAX_STRING} characters")
        parts.append(part)
    return "".join(parts)


def render(source: str, variables: dict[str, Any], *, html: bool, field: str = "template") -> str:
    """Render ``source``; a missing variable, a sandbox violation or a template over its
    budget (core/sandbox.py) is ``InvalidInput``."""
    token = budget.set(Budget()) if budget.get() is None else None
    try:
        return _render(source, variables, html)
    except UndefinedError as exc:
        found = _UNDEFINED.search(str(exc.message))
        name = found.group(1) if found else str(exc.message)
        raise InvalidInput(f"{field}: missing variable {name!r}") from exc
    except SecurityError as exc:
        raise InvalidInput(f"{field}: not allowed: {exc}") from exc
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"{field}: syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:  # a macro calling itself: a template bug, not ours
        raise InvalidInput(f"{field}: cannot render: recursion too deep") from exc
    except Exception as exc:  # a runtime error in the template itself: 1/0, a bad filter call
        raise InvalidInput(f"{field}: cannot render: {exc.__class__.__name__}: {exc}") from exc
    finally:
        if token is not None:
            budget.reset(token)


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "head"}
    _BREAK = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAK:
            self.parts.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.parts.append(f"[{href}] ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BREAK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A plain-text alternative for templates saved without ``text_body``."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_header_breaks(value: str) -> str:
    """A value bound for a mail header never creates a header: CR and LF become spaces."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


EMAIL_FIELDS = ("subject", "body", "text_body")
PUSH_FIELDS = ("title", "body", "image_url", "link")


def render_content(
    channel: str, template: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    """Render every field of a template version for ``channel``.

    Email: ``subject`` (text), ``body`` (HTML, autoescaped), ``text_body`` (text; derived from
    the rendered HTML when the template has none). Push: ``title``, ``body``, ``image_url``,
    ``link``, all text; the optional ones stay None when the template leaves them out.
    Every field spends from one budget (core/sandbox.py, ``MAX_STEPS`` steps and so on): a
    notification's whole render is bounded, not each field alone.
    """
    token = budget.set(Budget())
    try:
        return _render_fields(channel, template, variables)
    finally:
        budget.reset(token)


# A template renders on the event loop (no thread hand-over) when each of its sources is at
# most this long and has no loop, macro or call block: then its work is linear in its source
# and its variables (bounded by the accept's body limit), well under a millisecond. One that
# takes longer than ON_LOOP_MAX_S of CPU ON_LOOP_STRIKES times in a row is rendered in a
# thread from then on. Not once: a garbage collection during a render counts as the render's
# CPU time, and on a busy worker one such outlier in thousands sent the bench's (57 µs)
# template to the thread for good, where the hand-over cost more than the render.
ON_LOOP_MAX_SOURCE = 4096
ON_LOOP_MAX_S = 0.002
ON_LOOP_STRIKES = 3
_slow_on_loop: set[tuple[str, ...]] = set()
_strikes: dict[tuple[str, ...], int] = {}


@lru_cache(maxsize=4096)
def _straight(source: str) -> bool:
    """No loop, macro, call or filter block in ``source`` (which has been checked)."""
    if len(source) > ON_LOOP_MAX_SOURCE:
        return False
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError:
        return False
    blocks = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.Call)
    return not any(True for _ in tree.find_all(blocks))


async def render_content_async(
    channel: str,
    template: dict[str, Any],
    variables: dict[str, Any],
    *,
    cheap_on_loop: bool = False,
) -> dict[str, Any]:
    """:func:`render_content` in a thread: the event loop runs on while a template renders
    (at most ``MAX_CPU_S`` of CPU; docs/decisions.md has the measurements). With
    ``cheap_on_loop`` (the workers), a template without loops or calls renders on the loop:
    the thread's hand-over cost more than such a render (docs/performance.md)."""
    if cheap_on_loop:
        sources = tuple(v for v in template.values() if isinstance(v, str))
        if sources not in _slow_on_loop and all(_straight(src) for src in sources):
            # Compiled first (once per template and process, cached): the bound is for the
            # render. CPU time of the loop's thread: on a busy machine wall time counts the
            # waits for a core, and would send every template to the thread.
            for name in EMAIL_FIELDS if channel == "email" else PUSH_FIELDS:
                if template.get(name):
                    _compiled(template[name], channel == "email" and name == "body")
            started = time.thread_time()
            try:
                return render_content(channel, template, variables)
            finally:
                _count_strike(sources, time.thread_time() - started > ON_LOOP_MAX_S)
    return await asyncio.to_thread(render_content, channel, template, variables)


def _count_strike(sources: tuple[str, ...], slow: bool) -> None:
    """A slow render on the loop is a strike against its template; a fast one clears them."""
    if not slow:
        _strikes.pop(sources, None)
        return
    strikes = _strikes[sources] = _strikes.get(sources, 0) + 1
    if strikes >= ON_LOOP_STRIKES and len(_slow_on_loop) < 4096:
        _slow_on_loop.add(sources)
        del _strikes[sources]
    if len(_strikes) > 4096:  # bounded: templates seen slow once, long ago, are forgotten
        _strikes.clear()


def _render_fields(
    channel: str, template: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    if channel == "email":
        body = render(template["body"], variables, html=True, field="body")
        text_source = template.get("text_body")
        return {
            "subject": strip_header_breaks(
                render(template["subject"], variables, html=False, field="subject")
            ),
            "body": body,
            "text_body": (
                render(text_source, variables, html=False, field="text_body")
                if text_source
                else html_to_text(body)
            ),
        }
    rendered: dict[str, Any] = {}
    for name in PUSH_FIELDS:
        source = template.get(name)
        rendered[name] = render(source, variables, html=False, field=name) if source else None
    return rendered
