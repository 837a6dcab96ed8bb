"""Statuses are one type with one transition table (core.status): every rule about moving a
notification's status is read from it, and every status can be reached."""

from __future__ import annotations

import ast
from pathlib import Path

import tidings
from tidings.core.status import (
    BOUNCE_TRANSITIONS,
    INITIAL,
    TRANSITIONS,
    Status,
    may_move,
)

SRC = Path(tidings.__file__).parent


def test_may_move_is_the_table_and_nothing_else() -> None:
    assert set(TRANSITIONS) == set(Status), "every status has its row"
    for current in Status:
        for new in Status:
            assert may_move(current, new) == (new in TRANSITIONS[current]), (current, new)
            bounce = new in TRANSITIONS[current] | BOUNCE_TRANSITIONS.get(current, frozenset())
            assert may_move(current, new, bounced=True) == bounce, (current, new)


def test_every_status_is_reachable_from_acceptance() -> None:
    seen, todo = set(INITIAL), list(INITIAL)
    while todo:
        for new in TRANSITIONS[todo.pop()] - seen:
            seen.add(new)
            todo.append(new)
    assert seen == set(Status)


def _status_literals(tree: ast.AST) -> list[int]:
    """Lines that compare something named *status* with a status written as a string."""
    names = {s.value for s in Status}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        about_status = any(
            (isinstance(s, ast.Attribute) and s.attr.endswith("status"))
            or (isinstance(s, ast.Name) and s.id.endswith("status"))
            for s in sides
        )
        literals = [
            c.value
            for s in sides
            for c in ast.walk(s)
            if isinstance(c, ast.Constant) and isinstance(c.value, str)
        ]
        if about_status and any(v in names for v in literals):
            found.append(node.lineno)
    return found


def test_no_module_compares_statuses_written_as_strings() -> None:
    """The transition rules live in core.status alone: elsewhere a status is Status.X."""
    offenders = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if "migrations" not in path.parts and "bench" not in path.parts
        for lines in [_status_literals(ast.parse(path.read_text()))]
        if lines
    }
    assert offenders == {}
