"""The rooms' import rules (docs/architecture.md), read from the source: faces never import
each other, the core imports no face, and the pure rooms import nothing that does I/O.

A face is where a deploy enters: the relay (the receiver and its worker), the Action and
``send``, and ``sync`` with the reconcile. What two faces share moves down into the core.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parent.parent / "bridge"

FACES = {
    "relay": (
        "bridge.app",
        "bridge.console",
        "bridge.gevent_worker",
        "bridge.health",
        "bridge.ingest",
        "bridge.relay",
        "bridge.turned_away",
        "bridge.views",
        "bridge.webhooks",
        "bridge.worker",
    ),
    "action": ("bridge.action",),
    "sync": ("bridge.sync",),
}
# Above the faces: the command line, the demo and the stand-ins put faces together. The
# Action's step is its entry point (it runs the ``action`` command).
TOP = (
    "bridge.cli",
    "bridge.commands",
    "bridge.demo_events",
    "bridge.fakecortex",
    "bridge.fakescm",
    "bridge.standin",
)
ENTRY_POINTS = {"bridge.action.step"}

# Pure rooms: payload -> event, config -> route, event -> request, history -> type, answers.
PURE = (
    "bridge.ci",
    "bridge.config.routing",
    "bridge.cortex.answers",
    "bridge.mapping",
    "bridge.model",
    "bridge.redact",
    "bridge.rollback",
    "bridge.sources",
    "bridge.times",
)
DOES_IO = (
    "bridge.cortex.budget",
    "bridge.cortex.client",
    "bridge.cortex.transport",
    "bridge.store",
    "flask",
    "gevent",
    "http.client",
    "psycopg",
    "requests",
    "socket",
    "sqlalchemy",
    "subprocess",
    "urllib.request",
    "werkzeug",
)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def face_of(module: str) -> str:
    """The face a module belongs to; "top" above the faces, "core" below them."""
    if _within(module, TOP):
        return "top"
    for face, prefixes in FACES.items():
        if _within(module, prefixes):
            return face
    return "core"


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(BRIDGE.rglob("*.py")):
        parts = path.relative_to(BRIDGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports(path: Path) -> set[str]:
    """Every absolute module an import statement names, wherever it stands (a function's
    own import counts as much as the top's), except under ``if TYPE_CHECKING:`` (a type's
    name runs nothing)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def crossings() -> list[str]:
    wrong = []
    for name, path in modules():
        mine = face_of(name)
        if mine == "top" or name in ENTRY_POINTS:
            continue
        for other in sorted(imports(path)):
            if not other.startswith("bridge."):
                continue
            theirs = face_of(other)
            if theirs not in ("core", mine):
                wrong.append(f"{name} ({mine}) imports {other} ({theirs})")
    return wrong


def impure() -> list[str]:
    wrong = []
    for name, path in modules():
        if not _within(name, PURE):
            continue
        wrong.extend(
            f"{name} imports {other}" for other in sorted(imports(path)) if _within(other, DOES_IO)
        )
    return wrong


def test_faces_do_not_import_each_other_and_the_core_imports_no_face() -> None:
    assert crossings() == []


def test_the_pure_rooms_import_nothing_that_does_io() -> None:
    assert impure() == []


@pytest.mark.parametrize(
    ("module", "face"),
    [
        ("bridge.worker", "relay"),
        ("bridge.console.pages", "relay"),
        ("bridge.action.run", "action"),
        ("bridge.sync.engine", "sync"),
        ("bridge.record.core", "core"),
        ("bridge.commands.serve", "top"),
        ("bridge.webhooksx", "core"),  # a prefix is a whole name, not the start of one
    ],
)
def test_rooms_are_told_apart_by_whole_names(module: str, face: str) -> None:
    assert face_of(module) == face


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    """The rule is not vacuous: a module of one face naming another's is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bridge.store import Store\n"
        "def f():\n    from bridge.worker import Worker\n",
        encoding="utf-8",
    )
    assert "bridge.worker" in imports(sample)
    assert "bridge.store" not in imports(sample)
    assert face_of("bridge.worker") != face_of("bridge.sync.engine")
