"""Field mapping: selection, renames, and names that would collide."""

from __future__ import annotations

from pathlib import Path

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


def test_sinks_refuse_the_clash_when_they_are_built(tmp_path: Path) -> None:
    from floe_egress.config.models import RetryConfig
    from floe_egress.errors import ConfigError
    from floe_egress.sinks.registry import BuildRequest, get_sink_type

    for name, config in (
        ("rest_api", {"url": "https://api.example.com/v1"}),
        ("sqlite", {"path": str(tmp_path / "d.db"), "table": "t"}),
    ):
        sink_type = get_sink_type(name)
        assert sink_type is not None
        request = BuildRequest(
            destination="d",
            sink_config=sink_type.config_model.model_validate(config),
            mode="upsert",
            key=("id",),
            field_mapping={"email": "id"},
            batch_size=None,
            rate_limit=None,
            retry=RetryConfig(),
            work_dir=tmp_path / name,
        )
        with pytest.raises(ConfigError, match=r"destination 'd': field_mapping 'email' -> 'id'"):
            sink_type.build(request)
