"""The Airflow APIs this package uses whose home differs between the Airflow 3 versions it supports (3.1 to 3.3).

Each name is imported from its current place first (the one of the newest Airflow), falling back to where the
older versions keep it; a comment names the version that lacks it. Import these from here, not from Airflow.
"""

from __future__ import annotations

# Airflow 3.1: airflow.sdk.exceptions has no AirflowFailException, AirflowSkipException or
# AirflowNotFoundException; they are airflow.exceptions' (the task runner of 3.1 catches those). From 3.2 the SDK
# defines them and airflow.exceptions only re-exports them, deprecated.
try:
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException
except ImportError:
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSkipException,
    )

# Airflow 3.1: airflow.sdk has no ``conf`` (the SDK's configuration parser, airflow.sdk.configuration, from 3.2);
# the task SDK of 3.1 reads airflow.configuration.conf itself.
try:
    from airflow.sdk import conf
except ImportError:
    from airflow.configuration import conf  # type: ignore[assignment,unused-ignore]


def dag_of(dag_id: str) -> tuple[bool, list[str]] | None:
    """From a task (a worker): whether Airflow has this DAG paused, and its tags; None when Airflow cannot tell.

    Through the task SDK (``RuntimeTaskInstance.get_dag``, the execution API's ``GET /dags/{dag_id}``).
    Airflow 3.1 has neither, so there it is always None. Never called in the triggerer: its supervisor
    answers no ``GetDag`` (not even in 3.3).
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    get_dag = getattr(RuntimeTaskInstance, "get_dag", None)
    if get_dag is None:  # Airflow 3.1
        return None
    try:
        dag = get_dag(dag_id)
    except Exception:  # no supervisor, an unknown DAG, no answer: Airflow cannot tell
        return None
    paused = getattr(dag, "is_paused", None)
    if not isinstance(paused, bool):
        return None
    return paused, [str(tag) for tag in getattr(dag, "tags", None) or []]


__all__ = ["AirflowFailException", "AirflowNotFoundException", "AirflowSkipException", "conf", "dag_of"]
