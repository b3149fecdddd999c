"""The daemon and its sync cycle.

`run_cycle` is one cycle of one destination (what `floe-egress sync` runs under a
`StandaloneLease`), `preview_cycle` what it would send, `Runtime` what cycles share,
`Progress` what a cycle that sends many rows tells whoever watches it. The
always-on service itself (`floe-egress run`) is `floe_egress.daemon.service`, imported
only by the command that runs it.
"""

from __future__ import annotations

from floe_egress.daemon.cycle import run_cycle
from floe_egress.daemon.leases import CycleLease, StandaloneLease
from floe_egress.daemon.preview import preview_cycle
from floe_egress.daemon.progress import NO_PROGRESS, Progress
from floe_egress.daemon.result import CycleResult
from floe_egress.daemon.runtime import Runtime

__all__ = [
    "NO_PROGRESS",
    "CycleLease",
    "CycleResult",
    "Progress",
    "Runtime",
    "StandaloneLease",
    "preview_cycle",
    "run_cycle",
]
