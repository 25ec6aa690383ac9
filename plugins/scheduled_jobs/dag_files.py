"""The two DAG files that go into Airflow's DAGs folder, written by ``scheduled-jobs dag-files FOLDER``.

Airflow finds DAGs only in Python files of its DAGs folder; an installed package has none there. The files are
this small on purpose: everything they do is in the package, so an upgrade of the package never needs them
written again. This checkout's dags/ holds the same two files (a test keeps them equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DAGS_FILE = "scheduled_jobs_dags.py"
PROBLEMS_FILE = "scheduled_jobs_problems.py"

SOURCES = {
    DAGS_FILE: '''"""Airflow DAGs of the scheduled jobs: one DAG per YAML file in the job definitions folder.

The folder is ``[scheduled_jobs] definitions_folder`` (AIRFLOW__SCHEDULED_JOBS__DEFINITIONS_FOLDER).
"""

from __future__ import annotations

from scheduled_jobs.factory import build_dags

globals().update(build_dags())
''',
    PROBLEMS_FILE: '''"""Airflow import errors for invalid scheduled job files: this file defines no DAG.

Every problem in the job definitions and configurations is raised here, so the Airflow UI shows it
as this file's import error while the valid jobs' DAGs keep running.
"""

from __future__ import annotations

from scheduled_jobs.factory import raise_problems

raise_problems()
''',
}


def write(folder: Path, *, force: bool = False) -> list[str]:
    """Write the DAG files into ``folder`` (made if missing); a file that differs is replaced only with ``force``.

    Returns one line per file saying what was done; raises ``FileExistsError`` naming the files that differ.
    """
    folder.mkdir(parents=True, exist_ok=True)
    differ = [
        name
        for name, source in SOURCES.items()
        if (folder / name).exists() and _read(folder / name) != source and not force
    ]
    if differ:
        raise FileExistsError(", ".join(str(folder / name) for name in differ))
    done = []
    for name, source in SOURCES.items():
        path = folder / name
        if path.is_file() and not path.is_symlink() and _read(path) == source:
            done.append(f"{path}: up to date")
            continue
        path.unlink(missing_ok=True)  # a link is replaced, never written through
        path.write_text(source, encoding="utf-8")
        done.append(f"{path}: written")
    return done


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
