"""floe.yaml compiled into versioned artifacts: every default resolved, secrets left as references.

The artifact format has its own semantic version (`ARTIFACT_VERSION`): the loader reads
any 1.x file and refuses other majors with a message that says to recompile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from floe_egress.config.loader import COMPILED_KIND, LoadedConfig
from floe_egress.config.models import Destination

ARTIFACT_VERSION = "1.0.0"

BatchSizeOf = Callable[[str], int | None]
"""A sink type's own batch size by the type's name; None for a type it does not know."""


def compile_spec(
    loaded: LoadedConfig,
    *,
    now: datetime | None = None,
    batch_size_of: BatchSizeOf | None = None,
) -> dict[str, Any]:
    """The compiled artifacts of a loaded config, ready for `json.dumps`.

    A destination without `batch_size` gets its sink type's, from `batch_size_of`
    (`floe_egress.spec.compile_artifacts` hands in the sink registry's); None without it.
    """
    from floe_egress import __version__

    spec = loaded.spec
    sizes = batch_size_of or _no_batch_size
    generated = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "kind": COMPILED_KIND,
        "version": ARTIFACT_VERSION,
        "floe_egress_version": __version__,
        "generated_at": generated.isoformat(timespec="seconds"),
        "source": {"path": str(loaded.source), "sha256": loaded.sha256, "format": loaded.format},
        "spec": spec.model_dump(mode="json", by_alias=True),
        "destinations": [
            compile_destination(d, default_batch_size=sizes(d.sink_type))
            for d in spec.ingestion.destinations
        ],
    }


def compile_destination(
    dest: Destination, *, default_batch_size: int | None = None
) -> dict[str, Any]:
    """One destination as the daemon runs it: defaults applied (`default_batch_size`: its
    sink type's, for a destination without `batch_size`), schedule spelled out."""
    schedule: dict[str, Any]
    if dest.schedule.cron is not None:
        schedule = {"kind": "cron", "cron": dest.schedule.cron}
    else:
        schedule = {"kind": "interval", "interval_seconds": dest.schedule.effective_interval}
    return {
        "name": dest.name,
        "enabled": dest.enabled,
        "source_table": dest.source_table,
        "ref": dest.ref,
        "sink_type": dest.sink_type,
        "mode": dest.mode,
        "primary_key": dest.primary_key,
        "field_mapping": dest.field_mapping,
        "batch_size": dest.batch_size if dest.batch_size is not None else default_batch_size,
        "rate_limit": dest.rate_limit.model_dump(mode="json") if dest.rate_limit else None,
        "schedule": schedule,
        "retry": dest.retry.model_dump(mode="json"),
        "max_attempts": dest.max_attempts,
        "max_delete_fraction": dest.max_delete_fraction,
        "sink_config": dest.model_dump(mode="json")["sink_config"],
    }


def _no_batch_size(sink_type: str) -> None:
    return None


__all__ = ["ARTIFACT_VERSION", "BatchSizeOf", "compile_destination", "compile_spec"]
