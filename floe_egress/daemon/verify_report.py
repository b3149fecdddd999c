"""What `floe-egress verify` found, as JSON and as text.

A report holds one `Side` per comparison: the digest against the table, and (database
destinations) the destination table against the table. Each counts missing, extra and
differing keys with a sample of each; which of them are differences depends on the sync
mode (changes/verify.py COUNTED), the others are shown with why they are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from floe_egress.changes.verify import CATEGORIES, Category, Differences


@dataclass(slots=True)
class Side:
    name: str
    """`digest` or `destination`."""
    compared: bool
    note: str | None = None
    """Why it was not compared, or what to know about it."""
    trouble: bool = False
    """The side cannot be trusted at all (a lost or damaged digest): one difference."""
    keys: int | None = None
    """Keys (digest) or rows (destination) it holds."""
    found: Differences | None = None
    counted: frozenset[Category] = frozenset()
    not_counted: dict[Category, str] = field(default_factory=dict)
    columns_not_compared: dict[str, str] = field(default_factory=dict)

    def count(self, category: Category) -> int:
        return 0 if self.found is None else self.found.count(category)

    @property
    def differences(self) -> int:
        return int(self.trouble) + sum(self.count(c) for c in self.counted)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "compared": self.compared,
            "note": self.note,
            "trouble": self.trouble,
            "keys": self.keys,
            "differences": self.differences,
        }
        for category in CATEGORIES:
            out[category] = {
                "count": self.count(category),
                "counted": category in self.counted,
                "sample": [] if self.found is None else self.found.sample(category),
            }
            if category in self.not_counted:
                out[category]["why_not_counted"] = self.not_counted[category]
        if self.columns_not_compared:
            out["columns_not_compared"] = dict(self.columns_not_compared)
        return out

    def lines(self, where: str) -> list[str]:
        head = f"  {self.name}{where}: "
        if not self.compared:
            return [head + f"not compared ({self.note})"]
        if self.trouble:
            return [head + f"cannot be trusted: {self.note}"]
        counts = ", ".join(f"{self.count(c)} {c}" for c in CATEGORIES if c in self.counted)
        verdict = "agrees" if not self.differences else counts
        what = "key" if self.name == "digest" else "row"
        lines = [head + f"{verdict} ({self.keys} {what}{'' if self.keys == 1 else 's'})"]
        if self.note:
            lines.append(f"    note: {self.note}")
        for category in CATEGORIES:
            n = self.count(category)
            if not n or self.found is None:
                continue
            if category in self.counted:
                keys = " ".join(json.dumps(k, default=str) for k in self.found.sample(category))
                more = f" (and {n - 5} more)" if n > 5 else ""
                lines.append(f"    {category}: {keys}{more}")
            else:
                lines.append(f"    {n} {category}, not differences: {self.not_counted[category]}")
        for column, why in self.columns_not_compared.items():
            lines.append(f"    column {column} not compared: {why}")
        return lines


@dataclass(slots=True)
class VerifyReport:
    destination: str
    table: str
    mode: str
    key: tuple[str, ...]
    snapshot_id: int | None
    table_rows: int
    invalid_keys: int
    digest: Side
    target: Side
    """The destination itself."""
    target_where: str = ""
    queued: int | None = None
    """Keys `--repair` queued for the next cycle (None without `--repair`)."""
    filter: dict[str, Any] | None = None
    """A destination with a filter: its differences as rows that entered, left and
    changed in the subset (daemon/verify.py `_filter_effects`)."""

    @property
    def differences(self) -> int:
        return self.digest.differences + self.target.differences

    @property
    def agrees(self) -> bool:
        return self.differences == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "table": self.table,
            "mode": self.mode,
            "key": list(self.key),
            "snapshot_id": self.snapshot_id,
            "table_rows": self.table_rows,
            "invalid_keys": self.invalid_keys,
            "agrees": self.agrees,
            "differences": self.differences,
            "digest": self.digest.to_json(),
            "destination_table": self.target.to_json(),
            "repair": None if self.queued is None else {"queued": self.queued},
            "filter": self.filter,
        }

    def lines(self) -> list[str]:
        at = f"at snapshot {self.snapshot_id}" if self.snapshot_id is not None else "(empty)"
        verdict = (
            "agrees with"
            if self.agrees
            else f"{self.differences} difference{'s' if self.differences != 1 else ''} from"
        )
        lines = [
            f"{self.destination}: {verdict} table {self.table} {at} "
            f"(mode {self.mode}, key {', '.join(self.key)}; {self.table_rows} keys)"
        ]
        if self.invalid_keys:
            lines.append(
                f"  {self.invalid_keys} keys held by more than one row are invalid: "
                "never sent, not compared"
            )
        if self.filter is not None:
            f = self.filter
            lines.append(
                f"  filter {f['filter']!r}: {f['rows_matching']} rows match; "
                f"{f['entered_not_received']} entered but not received, "
                f"{f['left_not_removed']} left but still held, "
                f"{f['changed_not_received']} changed but not received"
            )
        lines += self.digest.lines("")
        where = f" ({self.target_where})" if self.target_where else ""
        lines += self.target.lines(where)
        if self.queued is not None:
            lines.append(
                f"  repair: {self.queued} key{'s' if self.queued != 1 else ''} queued for "
                "the next cycle"
            )
        return lines


__all__ = ["Side", "VerifyReport"]
