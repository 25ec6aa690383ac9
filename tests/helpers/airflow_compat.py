"""The Airflow internals only the tests use whose home differs between the supported Airflow versions (3.1 to 3.3).

The package's own shims are scheduled_jobs.compat; these are the tests' (what the DAG processor and the scheduler
do, reproduced in a test), kept out of the package so that no task or DAG parse imports them. Each name comes
from its current place first, falling back to the older one; a comment names the version that lacks it.
"""

from __future__ import annotations

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


__all__ = ["DagBag", "DagSerialization", "SerializedDAG", "coerce_to_core_timetable", "sync_bag_to_db"]
