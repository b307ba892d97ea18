"""The helper package is a house with floors: imports only go downward, never in a cycle.

``hardway/`` has one subpackage per part of the course. A part may import the parts
beneath it (and its own modules), never one above it, so that a learner reading
chapter 05's code never meets chapter 10's, and so that no module waits on another
that waits on it. The floors, from the bottom::

    errors                       the exception tree (top-level module)
    sys                          OS plumbing: syscalls, /proc, mounts, atomic files, state
    image                        ch05-06: digests, layers, documents, layouts
    isolation                    ch01-04: rootfs, namespaces, cgroups, the runtime (it runs
                                 an image's config, so it stands on image)
    distribution.server          the course's own registry: start/stop, config, tokens
    distribution                 ch07-08: references, the registry client, auth
    build                        ch09-10: the layer cache, the builders
    widgets                      pictures of all of the above
    course                       doctor, cleanup, grading, checks, labs, seed images
    cli, __main__                the command line over everything

Every import counts, also one inside a function (deferred for start-up time, it is
still a dependency) and one under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hardway"

#: each floor, and the floors it may import (besides itself)
FLOORS: dict[str, set[str]] = {
    "errors": set(),
    "sys": {"errors"},
    "image": {"errors", "sys"},
    "isolation": {"errors", "sys", "image"},
    "distribution.server": {"errors", "sys"},
    "distribution": {"errors", "sys", "image", "distribution.server"},
    "build": {"errors", "sys", "image", "isolation", "distribution", "distribution.server"},
    "widgets": {"errors", "sys", "image", "isolation", "distribution", "distribution.server"},
    "course": {
        "errors",
        "sys",
        "image",
        "isolation",
        "distribution",
        "distribution.server",
        "build",
        "widgets",
    },
    "cli": set(),  # filled in below: everything
    "__main__": {"cli"},
    "__init__": set(),
}
FLOORS["cli"] = set(FLOORS) - {"cli", "__main__", "__init__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str:
    """``hardway.distribution.server.config`` → ``distribution.server``."""
    rest = module.split(".")[1:]
    if not rest:
        return "__init__"
    if rest[:2] == ["distribution", "server"]:
        return "distribution.server"
    return rest[0]


def imports_of(path: Path) -> set[str]:
    """Every ``hardway`` module that ``path`` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "hardway"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "hardway":
                continue
            for alias in node.names:  # `from hardway.image import layers` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute ones")
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def test_every_module_is_on_a_floor() -> None:
    assert {floor_of(m) for m in MODULES} <= set(FLOORS), "a new part: add it to FLOORS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_downward(module: str) -> None:
    floor = floor_of(module)
    upward = sorted(
        target
        for target in GRAPH[module]
        if floor_of(target) != floor
        and floor_of(target) not in FLOORS[floor]
        and floor_of(target) != "__init__"
    )
    assert not upward, f"{module} ({floor}) imports from a floor above it: {upward}"


def _cycle() -> list[str] | None:
    """One import cycle among the modules, as the list of its members, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target not in MODULES:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(MODULES):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_checks_find_what_they_guard() -> None:
    """The walk sees deferred imports, and the floors refuse an upward one."""
    assert "hardway.isolation.cgroups" in GRAPH["hardway.course.leftovers"]
    assert "image" not in FLOORS["sys"] and "course" not in FLOORS["build"]
    assert floor_of("hardway.distribution.server.config") == "distribution.server"
