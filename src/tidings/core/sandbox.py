"""Jinja2's sandbox under a budget: what one render may build and how long it may run.

The sandbox stops access to Python internals but not work: ``|center(10**9)``,
``'%1000000000s'|format``, ``range(100000)`` nested in itself. Here every render of a
template (every field of one notification, together) spends from one :class:`Budget`:

* ``steps``: one per loop iteration, per call, per filter or test application;
* ``chars``: the size of every string or container a template builds, emits or scans
  (the receiver and arguments of a method call, a filter's input, the operands of ``in``);
* ``cpu_s``: CPU time, for the work the counts do not price exactly.

Widths (padding, precision, ``batch`` and ``slice`` counts) are bounded per operation before
anything is allocated, one string per operation and one rendered output by ``MAX_STRING``,
integers by ``MAX_INT_BITS``. Past a bound the render stops with :class:`OverBudget` (a
``SecurityError``, which rendering reports as a 422 / permanent failure naming the bound).

How: the compiled template is rewritten (``_generate``) so that loops iterate through
:meth:`BoundedSandbox.budget_iter` and output, concatenations, filter inputs and comparisons
pass through :meth:`BoundedSandbox.charge`; calls and operators go through the sandbox's own
hooks (``call``, ``call_binop``). The measured worst case is in docs/decisions.md.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes
from jinja2.filters import FILTERS
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

MAX_STEPS = 100_000
MAX_CPU_S = 0.5
MAX_CHARS = 4_000_000
MAX_STRING = 1_000_000
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


@dataclass
class Budget:
    """What one render may still spend. ``cpu_s`` is CPU time of the rendering thread (not
    wall-clock time: a loaded machine must not fail a template that is fine), checked at
    every step; it stops what the counts do not price exactly (a sort, a wrap of a big
    input), and must be created in the thread that renders."""

    steps: int = MAX_STEPS
    chars: int = MAX_CHARS
    cpu_s: float = MAX_CPU_S
    started: float = field(default_factory=time.thread_time)

    def spend(self, steps: int, chars: int = 0) -> None:
        self.steps -= steps
        self.chars -= chars
        if time.thread_time() - self.started > self.cpu_s:
            raise OverBudget(f"over {self.cpu_s:g} s of CPU time")
        if self.steps < 0:
            raise OverBudget(f"over {MAX_STEPS} steps (loop iterations, calls and filters)")
        if self.chars < 0:
            raise OverBudget(f"over {MAX_CHARS} characters built")


budget: ContextVar[Budget | None] = ContextVar("render_budget", default=None)


def _spend(steps: int, chars: int = 0) -> None:
    current = budget.get()
    if current is not None:
        current.spend(steps, chars)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict | set | frozenset) else 0


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


def _check_str_call(name: str, receiver: str, args: tuple[Any, ...]) -> None:
    """The str methods whose output is not bounded by their input."""
    if name in ("center", "ljust", "rjust", "zfill") and args:
        check_width(args[0], f"str.{name} width")
    elif name == "expandtabs":
        size = args[0] if args else 8
        check_width(size, "a tab size")
        if isinstance(size, int) and receiver.count("\t") * size > MAX_STRING:
            raise OverBudget(f"expandtabs would build over {MAX_STRING} characters")
    elif name == "replace" and len(args) >= 2:
        _check_replace(receiver, args[0], args[1])
    elif name in ("format", "format_map"):
        check_format_spec(receiver)
    elif name == "join" and args and isinstance(args[0], Sized):
        if max(len(args[0]) - 1, 0) * len(receiver) > MAX_STRING:
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


def _checks() -> dict[str, Callable[..., None]]:
    def center(value: Any, width: Any = 80) -> None:
        check_width(width, "a center width")

    def fmt(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(str(value))

    def indent(value: Any, *args: Any, **kwargs: Any) -> None:
        width = _arg(args, kwargs, 0, "width")
        check_width(width, "an indent width")
        pad = len(width) if isinstance(width, str) else (width or 0)
        if str(value).count("\n") * pad > MAX_STRING:
            raise OverBudget(f"indent would build over {MAX_STRING} characters")

    def truncate(env: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        check_width(_arg(args, kwargs, 2, "end"), "a truncation mark")

    def slow_text(value: Any) -> None:
        if len(str(value)) > MAX_SLOW_TEXT:
            raise OverBudget(f"a text of over {MAX_SLOW_TEXT} characters to wrap or urlize")

    def urlize(ctx: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        slow_text(value)

    def wordwrap(env: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        slow_text(value)
        width = _arg(args, kwargs, 0, "width")
        check_width(width, "a wrap width")
        wrap = _arg(args, kwargs, 2, "wrapstring")
        check_width(wrap, "a wrap string")
        if isinstance(width, int) and width < 1:
            raise OverBudget("a wrap width must be at least 1")

    def count(value: Any, *args: Any, **kwargs: Any) -> None:
        check_width(args[0] if args else None, "a batch or slice count")

    def replace(ctx: Any, value: Any, old: Any, new: Any, *args: Any, **kwargs: Any) -> None:
        _check_replace(str(value), old, new)

    def join(ctx: Any, value: Any, d: Any = "", *args: Any, **kwargs: Any) -> None:
        if isinstance(value, Sized) and max(len(value) - 1, 0) * len(str(d)) > MAX_STRING:
            raise OverBudget(f"join would build over {MAX_STRING} characters")

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


_WIDTH_FILTERS = {"center", "indent", "wordwrap", "batch", "slice", "tojson", "truncate"}
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _const_ints(args: list[nodes.Expr]) -> list[int]:
    return [a.value for a in args if isinstance(a, nodes.Const) and isinstance(a.value, int)]


def _range_length(node: nodes.Expr) -> int | None:
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
            if target.attr in _WIDTH_METHODS:
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


class _Meter(NodeTransformer):
    """Rewrites a parsed template so that loops and what it builds are charged."""

    @staticmethod
    def _through(hook: str, node: nodes.Expr) -> nodes.Expr:
        return nodes.Call(nodes.EnvironmentAttribute(hook), [node], [], None, None)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._through("budget_iter", node.iter)
        if node.recursive:  # loop(children) iterates again, outside node.iter
            for call in node.find_all(nodes.Call):
                if isinstance(call.node, nodes.Name) and call.node.name == "loop":
                    call.args = [self._through("budget_iter", a) for a in call.args]
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        literal = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        # Literal text is not wrapped (it would be escaped as an expression); its size is
        # charged by one call that outputs nothing.
        charged: list[nodes.Expr] = [
            n if isinstance(n, nodes.TemplateData) else self._through("charge", n)
            for n in node.nodes
        ]
        if literal:
            charged.insert(0, self._through("charge_literal", nodes.Const(literal)))
        node.nodes = charged
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._through("charge", node)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        self.generic_visit(node)
        if node.node is not None:  # None: the body of a {% filter %} block, already charged
            node.node = self._through("charge", node.node)
        return node

    def visit_Test(self, node: nodes.Test) -> nodes.Node:
        self.generic_visit(node)
        node.node = self._through("charge", node.node)
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = self._through("charge", node.expr)
        for op in node.ops:
            op.expr = self._through("charge", op.expr)
        return node


# What Jinja itself passes along to context.call inside loops and blocks: not the template's.
_JINJA_KWARGS = frozenset({"_loop_vars", "_block_vars"})


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, check in _checks().items():
            self.filters[name] = _bounded_filter(name, check)
        # pprint is a debugging aid, and pformat of a big value is slow and unbounded.
        del self.filters["pprint"]
        self.globals["range"] = self.bounded_range
        self._hooks = {
            BoundedSandbox.charge,
            BoundedSandbox.charge_literal,
            BoundedSandbox.budget_iter,
        }

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Meter().visit(source), *args, **kwargs)  # type: ignore[no-any-return]

    # --- the hooks the rewritten template calls -------------------------------------------

    def charge(self, value: Any) -> Any:
        size = _size(value)
        check_string(value)
        _spend(1, size)
        return value

    def charge_literal(self, size: int) -> str:
        _spend(0, size)
        return ""

    def budget_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _spend(1)
            yield item

    @staticmethod
    def bounded_range(*args: int) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise OverBudget(f"a range of {len(numbers)} numbers is over {MAX_RANGE}")
        return numbers

    # --- the sandbox's own hooks ----------------------------------------------------------

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        receiver = getattr(__obj, "__self__", None)
        if receiver is __self and getattr(__obj, "__func__", None) in __self._hooks:
            return __obj(*args)  # without the _loop_vars/_block_vars Jinja adds in loops
        # The sandbox hands out str.format wrapped; the method itself is __wrapped__.
        method = getattr(__obj, "__wrapped__", __obj)
        receiver = getattr(method, "__self__", None)
        passed = [v for k, v in kwargs.items() if k not in _JINJA_KWARGS]
        _spend(1, _size(receiver) + sum(map(_size, args)) + sum(map(_size, passed)))
        if isinstance(receiver, str):
            _check_str_call(getattr(method, "__name__", ""), receiver, args)
        result = super().call(__context, __obj, *args, **kwargs)
        check_string(result, "a call's result")
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT:
                raise OverBudget(f"exponent {right} is over {MAX_EXPONENT}")
            if isinstance(left, int) and left.bit_length() * abs(right) > MAX_INT_BITS:
                raise OverBudget(f"an integer of over {MAX_INT_BITS} bits")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_REPEAT:
                    raise OverBudget(f"repetition would build over {MAX_REPEAT} items")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise OverBudget(f"an integer of over {MAX_INT_BITS} bits")
        if operator == "%" and isinstance(left, str):
            check_printf(left)
        result = super().call_binop(context, operator, left, right)
        check_int(result)
        return self.charge(result)
