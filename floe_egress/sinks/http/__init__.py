"""HTTP destinations: `rest_api`, `hubspot` and `salesforce`, delivered through dlt.

Importing this package does not import dlt; building a destination does.
"""

from __future__ import annotations

__all__: list[str] = []
