"""Layer rules of the connectors and their settings, read from the import graph (imports in functions count)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "scheduled_jobs"


def imported(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names = found.setdefault(str(path.relative_to(PACKAGE)), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return found


def test_connectors_never_import_the_store() -> None:
    for module, names in imported(PACKAGE / "connectors").items():
        assert not [n for n in names if n.startswith("scheduled_jobs.store")], module


BASE = {"exceptions", "settings", "identifiers", "jsondata", "redaction", "cron", "yaml_files", "realtime", "models"}


def test_connector_settings_import_only_the_standard_library_pydantic_and_lower_layers() -> None:
    for module, names in imported(PACKAGE / "models" / "connectors").items():
        for name in names:
            top, _, rest = name.partition(".")
            if top == "scheduled_jobs":
                assert rest.split(".")[0] in BASE, (module, name)
            else:
                assert top in sys.stdlib_module_names or top == "pydantic", (module, name)
