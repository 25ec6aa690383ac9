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

__all__ = ["AirflowFailException", "AirflowNotFoundException", "AirflowSkipException", "conf"]
