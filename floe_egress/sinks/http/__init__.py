"""HTTP destinations: `rest_api`, `hubspot` and `salesforce`.

The daemon and the CLI send each write directly; the platform plugin hands it through a
dlt pipeline (handoff.py says why). Importing this package does not import dlt; only a
destination built with the dlt hand-off does.
"""

from __future__ import annotations

__all__: list[str] = []
