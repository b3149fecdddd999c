"""dlt load-package hygiene shared by every dlt-backed sink (DESIGN.md §5).

- A pending load package makes `pipeline.run(new)` load the old package and silently
  ignore `new`: pending packages are aborted before each run. They belong to a write
  that failed (or a process that crashed) whose range the cycle sends again, because
  its checkpoint did not move.
- dlt keeps completed packages on disk forever: they are deleted after each run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def abort_pending(pipeline: Any, destination: str) -> list[str]:
    if not pipeline.has_pending_data:
        return []
    stale = [
        *pipeline.list_extracted_load_packages(),
        *pipeline.list_normalized_load_packages(),
    ]
    log.warning("dlt_pending_packages_aborted", destination=destination, load_ids=stale)
    pipeline.abort_packages()
    return list(stale)


def prune_completed(pipeline: Any) -> int:
    loaded = Path(pipeline.working_dir) / "load" / "loaded"
    pruned = 0
    for load_id in pipeline.list_completed_load_packages():
        shutil.rmtree(loaded / load_id, ignore_errors=True)
        pruned += 1
    return pruned
