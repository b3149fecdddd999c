"""Field types shared by the floe.yaml models and the sink types' `sink_config` models.

Every number has a lower and an upper bound and is finite: `.inf`, `.nan` and values
like 10**24 would otherwise pass validation and fail later, far from the key that
caused them (a timer that overflows, a counter SQLite cannot store).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that is not `.inf`, `-.inf` or `.nan`; give it bounds too."""

TimeoutSeconds = Annotated[float, Field(allow_inf_nan=False, ge=0.1, le=3600)]
"""A request timeout: from 0.1 s to an hour."""

Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port."""

__all__ = ["FiniteFloat", "Port", "TimeoutSeconds"]
