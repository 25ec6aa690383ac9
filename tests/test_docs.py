"""The docs site: it builds with mkdocs --strict (a broken link, a missing page or a page left out of the nav
fails), and its settings and command-line references are the code's own (scripts/docs_reference.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INSTALLED, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import docs_reference

pytestmark = pytest.mark.skipif(INSTALLED, reason="the docs are this checkout's")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    site = tmp_path / "src"
    (site / "docs").mkdir(parents=True)
    (site / "docs" / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n")
    (site / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text().split("\nnav:")[0] + "\nnav:\n  - index.md\n")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict"], cwd=site, capture_output=True, text=True)
    assert done.returncode != 0 and "missing.md" in done.stdout + done.stderr


def test_the_references_are_generated_from_the_code() -> None:
    assert docs_reference.main(["--check"]) == 0, "run .venv/bin/python scripts/docs_reference.py"


def test_every_setting_and_command_has_documented_text() -> None:
    from scheduled_jobs.provider_info import ALLOWED, OPTIONS

    assert set(ALLOWED) == set(OPTIONS)
    for key, option in OPTIONS.items():
        assert len(str(option["description"])) > 40, key
        assert f"`{key}`" in docs_reference.settings_page()
    page = docs_reference.cli_page()
    for path in docs_reference.command_paths():
        assert f"## `{path}`" in page
    import argparse

    from scheduled_jobs.cli import build_parser

    helps: dict[str, str] = {}
    for _, parser in docs_reference._subcommands(build_parser(), ["scheduled-jobs"]):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps |= {choice.dest: str(choice.help or "") for choice in action._choices_actions}
                for name in action.choices:
                    assert helps.get(name), f"the subcommand {name!r} has no help text"


def test_the_readme_is_short_and_links_into_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 160
    for page in ("getting-started", "tutorial", "install", "troubleshooting"):
        assert f"docs/{page}.md" in readme, page
