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

import gc
import threading
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from tidings.core.sandbox_checks import (
    MAX_CHARS,
    MAX_CPU_S,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_RANGE,
    MAX_REPEAT,
    MAX_STEPS,
    MAX_STRING,
    OverBudget,
    bounded_filters,
    check_int,
    check_printf,
    check_str_call,
    check_string,
    static_check,
)

__all__ = ["MAX_STRING", "BoundedSandbox", "Budget", "OverBudget", "budget", "static_check"]


class _CollectorClock(threading.local):
    """The CPU time each thread has spent in the garbage collector (``gc.callbacks``): a
    collection runs in whichever thread's allocation set it off, and a full one over a big
    heap took over the render budget itself (a CI run: a 60 µs template failed permanently,
    "over 0.5 s of CPU time"). A render is charged its own CPU time, not the collector's."""

    began = 0.0
    spent = 0.0

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self.began = time.thread_time()
        else:
            self.spent += time.thread_time() - self.began


_collector = _CollectorClock()
gc.callbacks.append(_collector)


def render_cpu_s() -> float:
    """This thread's CPU time, less what it spent collecting garbage."""
    return time.thread_time() - _collector.spent


@dataclass
class Budget:
    """What one render may still spend. ``cpu_s`` is CPU time of the rendering thread (not
    wall-clock time: a loaded machine must not fail a template that is fine; nor the garbage
    collector's, which may run in the middle of any render), checked at
    every step; it stops what the counts do not price exactly (a sort, a wrap of a big
    input), and must be created in the thread that renders."""

    steps: int = MAX_STEPS
    chars: int = MAX_CHARS
    cpu_s: float = MAX_CPU_S
    started: float = field(default_factory=render_cpu_s)

    def spend(self, steps: int, chars: int = 0) -> None:
        self.steps -= steps
        self.chars -= chars
        if render_cpu_s() - self.started > self.cpu_s:
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


class _Meter(NodeTransformer):
    """Rewrites a parsed template so that loops and what it builds are charged."""

    @staticmethod
    def _through(hook: str, node: Any) -> nodes.Expr:
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
        self.filters.update(bounded_filters())
        # pprint is a debugging aid, and pformat of a big value is slow and unbounded.
        del self.filters["pprint"]
        self.globals["range"] = self.bounded_range
        self._hooks = {
            BoundedSandbox.charge,
            BoundedSandbox.charge_literal,
            BoundedSandbox.budget_iter,
        }

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        return super()._generate(_Meter().visit(source), *args, **kwargs)

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

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        receiver = getattr(__obj, "__self__", None)
        if receiver is __self and getattr(__obj, "__func__", None) in __self._hooks:
            return __obj(*args)  # without the _loop_vars/_block_vars Jinja adds in loops
        # The sandbox hands out str.format wrapped; the method itself is __wrapped__.
        method = getattr(__obj, "__wrapped__", __obj)
        receiver = getattr(method, "__self__", None)
        passed = [v for k, v in kwargs.items() if k not in _JINJA_KWARGS]
        _spend(1, _size(receiver) + sum(map(_size, args)) + sum(map(_size, passed)))
        if isinstance(receiver, str):
            check_str_call(getattr(method, "__name__", ""), receiver, args)
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
            both_int = isinstance(left, int) and isinstance(right, int)
            if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise OverBudget(f"an integer of over {MAX_INT_BITS} bits")
        if operator == "%" and isinstance(left, str):
            check_printf(left)
        result = super().call_binop(context, operator, left, right)
        check_int(result)
        return self.charge(result)
