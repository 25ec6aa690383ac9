"""The Airflow internals only the tests use whose home or behaviour differs between the supported Airflow versions.

The package's own shims are scheduled_jobs.compat; these are the tests' (what the DAG processor and the scheduler
do, reproduced in a test), kept out of the package so that no task or DAG parse imports them. Each name comes
from its current place first (Airflow 3.3), falling back to the older one; a comment names the version that
lacks it.
"""

from __future__ import annotations

import os
from typing import Any

# Airflow 3.1: no airflow.dag_processing.dagbag; DagBag and sync_bag_to_db are airflow.models.dagbag's (3.2 moved
# them, leaving a deprecated alias there).
try:
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
except ImportError:
    from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef,attr-defined,unused-ignore]

# Airflow 3.1: airflow.serialization.serialized_objects has no DagSerialization; the same to_dict/from_dict are
# SerializedDAG's there (3.2 split it into DagSerialization and airflow.serialization.definitions.dag.SerializedDAG).
try:
    from airflow.serialization.serialized_objects import DagSerialization
except ImportError:
    from airflow.serialization.serialized_objects import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        SerializedDAG as DagSerialization,
    )

# Airflow 3.1: no airflow.serialization.definitions.dag; SerializedDAG (its bulk_write_to_db: what the DAG processor
# writes to the dag table) is airflow.serialization.serialized_objects'.
try:
    from airflow.serialization.definitions.dag import SerializedDAG
except ImportError:
    from airflow.serialization.serialized_objects import SerializedDAG  # type: ignore[no-redef,unused-ignore]

# Airflow 3.1: no airflow.serialization.encoders.coerce_to_core_timetable. A DAG of 3.1's task SDK holds a core
# timetable (airflow.timetables) already; from 3.2 it holds the SDK's, which the scheduler converts to the core one.
try:
    from airflow.serialization.encoders import coerce_to_core_timetable
except ImportError:

    def coerce_to_core_timetable(obj: Any) -> Any:  # type: ignore[misc,unused-ignore]
        return obj


def weight_rule_name(rule: Any) -> Any:
    """An operator's ``weight_rule`` as the name it was given (``"absolute"``).

    Airflow 3.1: BaseOperator.__init__ replaces the name by the strategy it names
    (``validate_and_load_priority_weight_strategy``: an ``_AbsolutePriorityWeightStrategy`` for ``"absolute"``);
    from 3.2 the operator keeps the name. A strategy maps back to its name only if it is one of Airflow's own.
    """
    if isinstance(rule, str):
        return rule
    from airflow.task.priority_strategy import airflow_priority_weight_strategies_classes

    return airflow_priority_weight_strategies_classes.get(type(rule), rule)


_PARSING_CONTEXT = ("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "_AIRFLOW_PARSING_CONTEXT_TASK_ID")


def dag_test(dag: Any, **kwargs: Any) -> Any:
    """``dag.test(**kwargs)`` (its DagRun), leaving the process's DAG parsing context as it found it.

    Airflow 3.1 and 3.2: the first ``dag.test()`` of a DAG the metadata database has no version of parses the
    bundle under ``_airflow_parsing_context_manager(dag_id=...)``, which sets ``_AIRFLOW_PARSING_CONTEXT_DAG_ID``
    and, when it was unset before, never removes it (airflow/sdk/definitions/_internal/dag_parsing_context.py).
    Every later DagBag of the process would then build that one DAG only, as on a worker. Airflow 3.3's
    ``dag.test()`` no longer uses that context manager.
    """
    before = {key: os.environ.get(key) for key in _PARSING_CONTEXT}
    try:
        return dag.test(**kwargs)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


__all__ = [
    "DagBag",
    "DagSerialization",
    "SerializedDAG",
    "coerce_to_core_timetable",
    "dag_test",
    "sync_bag_to_db",
    "weight_rule_name",
]
