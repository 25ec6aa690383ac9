"""Why a request's parameters were refused: ``name: reason`` per parameter, a whole number's with its range."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from scheduled_jobs.redaction import shown

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError


def _whole_number(annotation: object) -> bool:
    """``int``, or ``int | None`` (an optional whole number, such as the task list's ``before``)."""
    import typing

    return annotation is int or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and set(typing.get_args(annotation)) == {int, type(None)}
    )


def _bounds(request: Request, where: str, name: str) -> tuple[int, int] | None:
    """The declared range of a whole-number parameter of the route that answered, if it has one."""
    import annotated_types

    dependant = getattr(request.scope.get("route"), "dependant", None)
    params = {"query": "query_params", "path": "path_params"}.get(where)
    for param in getattr(dependant, params, []) if params else []:
        if param.alias == name and _whole_number(param.field_info.annotation):
            metadata = param.field_info.metadata
            low = [m.ge for m in metadata if isinstance(m, annotated_types.Ge) and isinstance(m.ge, int)]
            high = [m.le for m in metadata if isinstance(m, annotated_types.Le) and isinstance(m.le, int)]
            if low and high:
                return low[0], high[0]
    return None


def parameter_errors(request: Request, exc: RequestValidationError) -> str:
    """``name: reason`` per refused parameter, a whole number's with its range (``page: must be ...``)."""
    reasons = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        where, name = (location[0], location[-1]) if len(location) > 1 else ("", ".".join(location) or "request")
        if error.get("type") == "missing":
            reasons.append(f"{name}: is required")
            continue
        bounds = _bounds(request, where, name)
        if bounds is not None:
            low, high = bounds
            reasons.append(f"{name}: must be a whole number from {low} to {high}, got {shown(error.get('input'), 40)}")
        else:
            reasons.append(f"{name}: {error.get('msg', 'is not valid')}, got {shown(error.get('input'), 40)}")
    return "; ".join(reasons)
