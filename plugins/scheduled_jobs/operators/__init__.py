"""Operators that run the job kinds of a scheduled job."""

from __future__ import annotations

from scheduled_jobs.operators.export import ExportRouteOperator
from scheduled_jobs.operators.incoming import RunIncomingConfigurationOperator
from scheduled_jobs.operators.prune import PruneTasksOperator
from scheduled_jobs.operators.repair import RepairStuckTasksOperator

__all__ = ["ExportRouteOperator", "PruneTasksOperator", "RepairStuckTasksOperator", "RunIncomingConfigurationOperator"]
