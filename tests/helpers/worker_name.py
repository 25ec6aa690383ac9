"""``[core] hostname_callable`` for the Celery topology test: two workers on one machine, told apart.

Each worker process gets ``SJ_WORKER_NAME``; its task processes inherit it, so Airflow records that
name as the task instance's hostname.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("SJ_WORKER_NAME") or socket.getfqdn()
