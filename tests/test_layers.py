"""The layout holds: imports point down the layers, and each outside library has its one room.

web -> operations -> services -> engine | scheduling -> logs -> core
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "taskdash"
LAYERS = {
    "taskdash.core": 0,
    "taskdash.logs": 1,
    "taskdash.engine": 2,
    "taskdash.scheduling": 2,
    "taskdash.services": 3,
    "taskdash.operations": 4,
    "taskdash.web": 5,
    "taskdash": 6,
    "taskdash.serve": 7,
}
MODELS = {"Task", "Run", "Schedule", "ScheduleSlot"}
QUERIES = {"filter", "get", "get_or_none", "all", "create", "exists", "bulk_create", "exclude"}
BLUEPRINTS = {
    "taskdash.web.account",
    "taskdash.web.api",
    "taskdash.web.pages",
    "taskdash.web.schedules",
    "taskdash.web.storage",
    "taskdash.web.streams",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def layer_of(name: str) -> tuple[str, int] | None:
    """The layer a taskdash module belongs to (its longest prefix in LAYERS)."""
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    return None


def test_the_layer_map_covers_every_module() -> None:
    names = [name for name, _ in modules()]
    assert len(names) > 30
    assert all(layer_of(name) is not None for name in names)


@pytest.mark.parametrize(("name", "tree"), list(modules()), ids=lambda v: str(v)[:40])
def test_no_module_imports_a_higher_layer(name: str, tree: ast.Module) -> None:
    own = layer_of(name)
    assert own is not None
    for target in imported(tree):
        found = layer_of(target) if target.startswith("taskdash") else None
        if found is None or found[0] == own[0]:
            continue
        assert found[1] <= own[1], f"{name} (layer {own[0]}) imports {target} ({found[0]})"
        assert found[1] < own[1], f"{name} and {target} are siblings: neither may import the other"


def users_of(library: str) -> set[str]:
    return {
        name
        for name, tree in modules()
        if any(t == library or t.startswith(library + ".") for t in imported(tree))
    }


def test_each_outside_library_has_its_one_room() -> None:
    assert users_of("aiodocker") == {"taskdash.engine.docker"}
    assert users_of("croniter") == {"taskdash.scheduling.cron"}
    assert users_of("hypercorn") == {"taskdash.serve"}
    web = {name for name in users_of("quart") if name.startswith("taskdash.web")}
    assert users_of("quart") - web == {"taskdash", "taskdash.serve"}
    assert users_of("gc") == set(), "no process-wide garbage collector switches"


def attributes(tree: ast.Module) -> set[str]:
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def test_only_the_bulk_seam_reads_the_orms_internals() -> None:
    readers = {name for name, tree in modules() if "_meta" in attributes(tree)}
    assert readers == {"taskdash.core.bulk"}
    for name, tree in modules():
        assert not {"executor_class", "basetable"} & attributes(tree), name


def model_queries(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in MODELS
            and node.func.attr in QUERIES
        ):
            found.append(f"{node.func.value.id}.{node.func.attr}")
    return found


def test_the_web_layer_asks_operations_never_the_database() -> None:
    for name, tree in modules():
        if name.startswith("taskdash.web"):
            assert model_queries(tree) == [], f"{name} queries the database"
            assert "tortoise" not in {t.split(".")[0] for t in imported(tree)}, name


def test_no_blueprint_imports_another() -> None:
    for name, tree in modules():
        if name in BLUEPRINTS:
            assert imported(tree) & (BLUEPRINTS - {name}) == set(), name
