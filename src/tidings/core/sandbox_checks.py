"""The bounds of a render (core/sandbox.py) and the checks of single operations against
them: widths and format strings before anything is allocated, the filters whose output is
not bounded by their input, and what a template shows on its face when it is saved."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sized
from typing import Any

from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import SecurityError

# Per render (all fields of one notification), far above an ordinary template (an email
# with a 20-item loop spends 42 steps and 217 characters): docs/decisions.md has the figures.
MAX_STEPS = 100_000
MAX_CPU_S = 0.5
MAX_CHARS = 4_000_000
MAX_STRING = 1_000_000
# Per operation: a width, precision or count; one string; a range; an integer's size.
MAX_WIDTH = 1_000
MAX_RANGE = 100_000
MAX_REPEAT = 10_000
MAX_EXPONENT = 100
MAX_INT_BITS = 4_096
# wordwrap and urlize are Python code over the whole text in one filter call, beyond the
# reach of the step checks (a wrap of a 1 MB text takes over a second): their input is bounded.
MAX_SLOW_TEXT = 100_000


class OverBudget(SecurityError):
    """A template asked for more than a render may spend."""


def check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and abs(value) > MAX_WIDTH:
        raise OverBudget(f"{what} {value} is over {MAX_WIDTH}")
    if isinstance(value, str) and len(value) > MAX_WIDTH:
        raise OverBudget(f"{what} of {len(value)} characters is over {MAX_WIDTH}")


def check_string(value: Any, what: str = "a string") -> None:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise OverBudget(f"{what} of {len(value)} characters is over {MAX_STRING}")


def check_int(value: Any) -> None:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise OverBudget(f"an integer of over {MAX_INT_BITS} bits")


# printf-style conversions: width and precision, each a number or "*" (from the arguments).
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")


def check_printf(template: str) -> None:
    for width, precision in _PRINTF.findall(template):
        for part in (width, precision):
            if part == "*":
                raise OverBudget("a '*' width in a format string is not allowed")
            if part and int(part) > MAX_WIDTH:
                raise OverBudget(f"a format width of {part} is over {MAX_WIDTH}")


def check_format_spec(template: str) -> None:
    """``str.format`` specs: every number in a spec is a width or a precision at most."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # the call itself reports the malformed string
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise OverBudget("a nested field in a format spec is not allowed")
        for number in _DIGITS.findall(spec or ""):
            if int(number) > MAX_WIDTH:
                raise OverBudget(f"a format width of {number} is over {MAX_WIDTH}")


# The str methods whose first argument is a width: checked when called (check_str_call), and
# when the width is a constant, when the template is saved (static_check).
WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def check_str_call(name: str, receiver: str, args: tuple[Any, ...]) -> None:
    """The str methods whose output is not bounded by their input."""
    if name in WIDTH_METHODS and args:
        check_width(args[0], f"str.{name} width")
    if name == "expandtabs":
        size = args[0] if args else 8
        if isinstance(size, int) and receiver.count("\t") * size > MAX_STRING:
            raise OverBudget(f"expandtabs would build over {MAX_STRING} characters")
    elif name == "replace" and len(args) >= 2:
        _check_replace(receiver, args[0], args[1])
    elif name in ("format", "format_map"):
        check_format_spec(receiver)
    elif name == "join" and args and isinstance(args[0], Sized):
        _check_join(args[0], receiver)


def _check_join(items: Sized, separator: str) -> None:
    if max(len(items) - 1, 0) * len(separator) > MAX_STRING:
        raise OverBudget(f"join would build over {MAX_STRING} characters")


def _check_replace(value: Any, old: Any, new: Any) -> None:
    if isinstance(value, str) and isinstance(old, str) and isinstance(new, str):
        hits = len(value) + 1 if not old else value.count(old)
        if hits * len(new) > MAX_STRING:
            raise OverBudget(f"replace would build over {MAX_STRING} characters")


def _bounded_filter(name: str, check: Callable[..., None]) -> Callable[..., Any]:
    inner = FILTERS[name]

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return inner(*args, **kwargs)

    # Jinja passes the environment or context to a filter marked for it: keep the mark.
    bounded.__dict__.update(inner.__dict__)
    return bounded


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def bounded_filters() -> dict[str, Callable[..., Any]]:
    """Jinja's filters whose output is not bounded by their input, each checked first."""
    return {name: _bounded_filter(name, check) for name, check in _checks().items()}


def _width(check: Callable[..., None]) -> Callable[..., None]:
    """Marks the check of a filter whose arguments include a width (or a count): its
    constant arguments are checked when the template is saved too (static_check)."""
    check.__dict__["takes_width"] = True
    return check


def _checks() -> dict[str, Callable[..., None]]:
    @_width
    def center(value: Any, width: Any = 80) -> None:
        check_width(width, "a center width")

    def fmt(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(str(value))

    @_width
    def indent(value: Any, *args: Any, **kwargs: Any) -> None:
        width = _arg(args, kwargs, 0, "width")
        check_width(width, "an indent width")
        pad = len(width) if isinstance(width, str) else (width or 0)
        if str(value).count("\n") * pad > MAX_STRING:
            raise OverBudget(f"indent would build over {MAX_STRING} characters")

    @_width
    def truncate(env: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        check_width(_arg(args, kwargs, 2, "end"), "a truncation mark")

    def slow_text(value: Any) -> None:
        if len(str(value)) > MAX_SLOW_TEXT:
            raise OverBudget(f"a text of over {MAX_SLOW_TEXT} characters to wrap or urlize")

    def urlize(ctx: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        slow_text(value)

    @_width
    def wordwrap(env: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        slow_text(value)
        width = _arg(args, kwargs, 0, "width")
        check_width(width, "a wrap width")
        wrap = _arg(args, kwargs, 2, "wrapstring")
        check_width(wrap, "a wrap string")
        if isinstance(width, int) and width < 1:
            raise OverBudget("a wrap width must be at least 1")

    @_width
    def count(value: Any, *args: Any, **kwargs: Any) -> None:
        check_width(args[0] if args else None, "a batch or slice count")

    def replace(ctx: Any, value: Any, old: Any, new: Any, *args: Any, **kwargs: Any) -> None:
        _check_replace(str(value), old, new)

    def join(ctx: Any, value: Any, d: Any = "", *args: Any, **kwargs: Any) -> None:
        if isinstance(value, Sized):
            _check_join(value, str(d))

    @_width
    def tojson(env: Any, value: Any, indent: Any = None) -> None:
        check_width(indent, "a JSON indent")

    return {
        "center": center,
        "format": fmt,
        "indent": indent,
        "truncate": truncate,
        "wordwrap": wordwrap,
        "batch": count,
        "slice": count,
        "replace": replace,
        "join": join,
        "tojson": tojson,
        "urlize": urlize,
    }


_WIDTH_FILTERS = frozenset(
    name for name, check in _checks().items() if hasattr(check, "takes_width")
)


def _const_ints(args: list[nodes.Expr]) -> list[int]:
    return [a.value for a in args if isinstance(a, nodes.Const) and isinstance(a.value, int)]


def _range_length(node: nodes.Node) -> int | None:
    """The length of ``range(<constants>)``, or None for anything else."""
    if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)):
        return None
    if node.node.name != "range" or node.kwargs or node.dyn_args or node.dyn_kwargs:
        return None
    ints = _const_ints(node.args)
    if len(ints) != len(node.args) or not 1 <= len(ints) <= 3 or (len(ints) == 3 and not ints[2]):
        return None
    return len(range(*ints))


def static_check(tree: nodes.Template) -> None:
    """What a template asks for on its face, checked when it is saved: constant widths,
    format strings and ranges past their bounds, nested loops over constant ranges whose
    iterations multiply past ``MAX_STEPS``. The rest is stopped at render time."""
    for f in tree.find_all(nodes.Filter):
        if f.name in _WIDTH_FILTERS:
            for value in _const_ints(f.args + [kw.value for kw in f.kwargs]):
                check_width(value, f"the {f.name} argument")
        if f.name == "format" and isinstance(f.node, nodes.Const):
            check_printf(str(f.node.value))
    for mod in tree.find_all(nodes.Mod):
        if isinstance(mod.left, nodes.Const) and isinstance(mod.left.value, str):
            check_printf(mod.left.value)
    for call in tree.find_all(nodes.Call):
        length = _range_length(call)
        if length is not None and length > MAX_RANGE:
            raise OverBudget(f"a range of {length} numbers is over {MAX_RANGE}")
        target = call.node
        if isinstance(target, nodes.Getattr):
            if target.attr in WIDTH_METHODS:
                for value in _const_ints(call.args):
                    check_width(value, f"the {target.attr} width")
            if target.attr in ("format", "format_map") and isinstance(target.node, nodes.Const):
                check_format_spec(str(target.node.value))
    _check_loops(tree, 1)


def _check_loops(node: nodes.Node, outer: int) -> None:
    for child in node.iter_child_nodes():
        inner = outer
        if isinstance(child, nodes.For):
            length = _range_length(child.iter)
            if length is not None:
                inner = outer * max(length, 1)
                if inner > MAX_STEPS:
                    raise OverBudget(f"nested loops of {inner} iterations are over {MAX_STEPS}")
        _check_loops(child, inner)
