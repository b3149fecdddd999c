"""floe.yaml compiled into versioned artifacts: every default resolved, secrets left as references.

The artifact format has its own semantic version (`ARTIFACT_VERSION`): the loader reads
any 1.x file and refuses other majors with a message that says to recompile.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from floe_egress.config.loader import COMPILED_KIND, LoadedConfig
from floe_egress.config.models import Destination

ARTIFACT_VERSION = "1.0.0"


def compile_spec(loaded: LoadedConfig, *, now: datetime | None = None) -> dict[str, Any]:
    """The compiled artifacts of a loaded config, ready for `json.dumps`."""
    from floe_egress import __version__

    spec = loaded.spec
    generated = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "kind": COMPILED_KIND,
        "version": ARTIFACT_VERSION,
        "floe_egress_version": __version__,
        "generated_at": generated.isoformat(timespec="seconds"),
        "source": {"path": str(loaded.source), "sha256": loaded.sha256, "format": loaded.format},
        "spec": spec.model_dump(mode="json", by_alias=True),
        "destinations": [compile_destination(d) for d in spec.ingestion.destinations],
    }


def compile_destination(dest: Destination) -> dict[str, Any]:
    """One destination as the daemon runs it: defaults applied, schedule spelled out."""
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
        "batch_size": (
            dest.batch_size if dest.batch_size is not None else default_batch_size(dest.sink_type)
        ),
        "rate_limit": dest.rate_limit.model_dump(mode="json") if dest.rate_limit else None,
        "schedule": schedule,
        "retry": dest.retry.model_dump(mode="json"),
        "max_attempts": dest.max_attempts,
        "max_delete_fraction": dest.max_delete_fraction,
        "sink_config": dest.model_dump(mode="json")["sink_config"],
    }


def default_batch_size(sink_type: str) -> int | None:
    """The sink type's own batch size, or None for a type that is not registered."""
    # Deferred import: the registry lives in sinks/, a later step of the data flow.
    from floe_egress.sinks.registry import get_sink_type

    found = get_sink_type(sink_type)
    return found.default_batch_size if found is not None else None


__all__ = ["ARTIFACT_VERSION", "compile_destination", "compile_spec", "default_batch_size"]
