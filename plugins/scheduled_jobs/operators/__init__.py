"""Operators that run the three job types of a scheduled job."""

from __future__ import annotations

from scheduled_jobs.operators.export import ExportRouteOperator
from scheduled_jobs.operators.incoming import RunIncomingConfigurationOperator
from scheduled_jobs.operators.repair import RepairStuckTasksOperator

__all__ = ["ExportRouteOperator", "RepairStuckTasksOperator", "RunIncomingConfigurationOperator"]
