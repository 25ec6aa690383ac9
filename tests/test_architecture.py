"""The layer rules of docs/architecture.md, checked on the import graph of the package.

Every ``import`` and ``from ... import`` naming ``scheduled_jobs`` counts, at module level, inside a
function, or under ``TYPE_CHECKING``: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "scheduled_jobs"

# Bottom to top; a module imports from its own layer or lower ones only.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "exceptions",
            "compat",
            "settings",
            "dag_files",
            "identifiers",
            "jsondata",
            "redaction",
            "cron",
            "yaml_files",
            "realtime",
            "airflow_runs",
            "connections",
            "cron_checker",
            "timetables",
        ),
    ),
    ("models", ("models",)),
    ("catalog", ("catalog", "authoring")),
    ("store", ("store",)),
    ("connectors", ("connectors",)),
    ("loops", ("ingesting", "exporting")),
    ("operators", ("operators", "triggers")),
    ("top", ("factory", "cli", "web", "provider_info", "__init__")),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    head = module.split(".", 1)[0]
    for index, (_, prefixes) in enumerate(LAYERS):
        if head in prefixes:
            return index
    raise AssertionError(
        f"module scheduled_jobs.{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    )


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module relative to the package) for every import of the package in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from scheduled_jobs import settings`` names the module settings, not the package.
            if node.module == "scheduled_jobs":
                # ``__version__``, ``require_supported_airflow`` and the like are the package's own names (its
                # __init__), not modules: a name with no module or subpackage of that name.
                names = [
                    f"scheduled_jobs.{alias.name}"
                    if (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir()
                    else "scheduled_jobs.__init__"
                    for alias in node.names
                ]
            else:
                names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use absolute imports")
        else:
            continue
        found += [
            (node.lineno, name.removeprefix("scheduled_jobs.")) for name in names if name.startswith("scheduled_jobs.")
        ]
    return found


def _graph() -> dict[str, list[tuple[int, str]]]:
    return {
        _module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py")) if "migrations" not in path.parts
    }


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert ("operators.guard" in graph) and ("connectors.http" in graph) and ("store.hook" in graph)
    assert any(target.startswith("store") for edges in graph.values() for _, target in edges)


def test_no_module_imports_a_higher_layer() -> None:
    broken = [
        f"scheduled_jobs.{module}:{line} imports scheduled_jobs.{target} "
        f"({LAYERS[_layer(module)][0]} -> {LAYERS[_layer(target)][0]})"
        for module, edges in _graph().items()
        for line, target in edges
        if _layer(target) > _layer(module)
    ]
    assert not broken, "\n".join(broken)


def test_connectors_never_import_the_store() -> None:
    """A connector reads or writes a remote system; what it hands over is stored by the loops above it."""
    broken = [
        f"scheduled_jobs.{module}:{line} imports scheduled_jobs.{target}"
        for module, edges in _graph().items()
        if module.split(".")[0] == "connectors"
        for line, target in edges
        if target.split(".")[0] == "store"
    ]
    assert not broken, "\n".join(broken)


def test_the_store_is_reached_through_its_package_only() -> None:
    """Above the store, only ``scheduled_jobs.store``'s public names: its submodules are its own business."""
    broken = [
        f"scheduled_jobs.{module}:{line} imports scheduled_jobs.{target}"
        for module, edges in _graph().items()
        if module.split(".")[0] != "store"
        for line, target in edges
        if target.startswith("store.")
    ]
    assert not broken, "\n".join(broken)


def test_models_import_only_the_standard_library_and_pydantic() -> None:
    """The models layer does no I/O: no database, HTTP or Airflow module, so loading it is pure validation."""
    broken = []
    for path in sorted((PACKAGE / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            tops = [name.split(".")[0] for name in names]
            allowed = ("pydantic", "pydantic_core", "annotated_types", "scheduled_jobs")
            broken += [
                f"{path.relative_to(PACKAGE)}:{node.lineno} imports {top}"
                for top in tops
                if top not in allowed and top not in sys.stdlib_module_names
            ]
    assert not broken, "\n".join(broken)


def test_only_the_adapter_reaches_airflows_database_models() -> None:
    internals = ("airflow.models", "airflow.assets.manager", "airflow.utils.session")
    package = PACKAGE
    for path in package.rglob("*.py"):
        if path.name == "airflow_runs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                assert not module.startswith(internals), (str(path.relative_to(package)), module)
