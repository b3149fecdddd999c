"""Field mapping: selection, renames, and names that would collide."""

from __future__ import annotations

import pyarrow as pa
import pytest

from floe_egress.changes.model import OP_COLUMN
from floe_egress.sinks.mapping import apply_field_mapping

CHANGES = pa.table(
    {"id": [1], "email": ["a@x.io"], "ssn": ["123"], OP_COLUMN: ["insert"]},
)


def test_unmapped_columns_are_dropped_and_kept_ones_keep_their_names() -> None:
    mapped = apply_field_mapping(CHANGES, {"email": "mail"}, keep=(OP_COLUMN, "id"))
    assert mapped.column_names == ["mail", OP_COLUMN, "id"]
    assert mapped.to_pylist() == [{"mail": "a@x.io", OP_COLUMN: "insert", "id": 1}]


def test_a_field_onto_an_unmapped_key_name_is_refused() -> None:
    # The key comes from the table's identifier fields, so validate could not see this.
    with pytest.raises(KeyError, match=r"'email' -> 'id' is also the field of key column 'id'"):
        apply_field_mapping(CHANGES, {"email": "id"}, keep=(OP_COLUMN, "id"))
    swapped = apply_field_mapping(CHANGES, {"email": "id", "id": "uid"}, keep=(OP_COLUMN, "id"))
    assert swapped.to_pylist() == [{"id": "a@x.io", "uid": 1, OP_COLUMN: "insert"}]


def test_a_mapped_column_the_table_lacks_is_named() -> None:
    with pytest.raises(KeyError, match=r"\['phone'\]"):
        apply_field_mapping(CHANGES, {"phone": "tel"})
