"""Arrow values as JSON: unit cases per type, then the same through dlt to a server."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from floe_egress.sinks.http import rest_api
from floe_egress.sinks.http.convert import DecimalMode, convert, to_records
from tests.fixtures.fake_apis import FakeRestApi
from tests.integration.sinks_http.conftest import SinkFactory, changes, context

PARIS = dt.timezone(dt.timedelta(hours=2))
STRUCT = pa.struct([("city", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])


@pytest.mark.parametrize(
    ("arrow_type", "value", "expected"),
    [
        (
            pa.timestamp("us", tz="UTC"),
            dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
            "2024-05-01T12:00:00Z",
        ),
        (
            pa.timestamp("us", tz="Europe/Paris"),
            dt.datetime(2024, 5, 1, 14, 0, 0, 250000, tzinfo=PARIS),
            "2024-05-01T12:00:00.250000Z",
        ),
        (pa.timestamp("us"), dt.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00Z"),
        (pa.timestamp("ns", tz="UTC"), 1714564800123456789, "2024-05-01T12:00:00.123456Z"),
        (pa.date32(), dt.date(2024, 2, 29), "2024-02-29"),
        (pa.time64("us"), dt.time(7, 5, 3), "07:05:03"),
        (pa.decimal128(12, 4), Decimal("1234.5000"), "1234.5000"),
        (pa.binary(), b"\x00\xffhi", "AP9oaQ=="),
        (pa.large_binary(), b"abc", "YWJj"),
        (pa.float64(), float("nan"), None),
        (pa.float64(), 2.5, 2.5),
        (pa.int64(), 2**53 + 1, 2**53 + 1),
        (pa.bool_(), True, True),
        (pa.string(), None, None),
        (pa.decimal128(10, 2), None, None),
        (
            STRUCT,
            {"city": "Lyon", "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
            {"city": "Lyon", "at": "2024-01-01T00:00:00Z"},
        ),
        (pa.list_(pa.decimal128(5, 1)), [Decimal("1.5"), None], ["1.5", None]),
        (pa.map_(pa.string(), pa.int32()), [("a", 1), ("b", 2)], {"a": 1, "b": 2}),
        (pa.uuid(), uuid.UUID(int=1).bytes, "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_value_conversion(arrow_type: pa.DataType, value: Any, expected: Any) -> None:
    table = pa.table({"v": pa.array([value], type=arrow_type)})

    assert to_records(table) == [{"v": expected}]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("string", Decimal("10.25"), "10.25"),
        ("number", Decimal("10.25"), 10.25),
        ("number", Decimal("42.00"), 42),
    ],
)
def test_decimals_as_strings_or_numbers(mode: DecimalMode, value: Decimal, expected: Any) -> None:
    table = pa.table({"v": pa.array([value], pa.decimal128(10, 2))})

    assert to_records(table, mode) == [{"v": expected}]


ROW_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("seen_at", pa.timestamp("us", tz="Europe/Paris")),
        ("local_at", pa.timestamp("us")),
        ("born", pa.date32()),
        ("balance", pa.decimal128(12, 2)),
        ("avatar", pa.binary()),
        ("address", STRUCT),
        ("tags", pa.list_(pa.string())),
        ("note", pa.string()),
    ]
)
ROW = {
    "customer_id": 7,
    "seen_at": dt.datetime(2024, 5, 1, 14, 0, tzinfo=PARIS),
    "local_at": dt.datetime(2024, 5, 1, 9, 15),
    "born": dt.date(1990, 1, 31),
    "balance": Decimal("1050.75"),
    "avatar": b"\x89PNG",
    "address": {"city": "Lyon", "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
    "tags": ["vip", "beta"],
    "note": None,
}


@pytest.mark.parametrize(("decimals", "balance"), [("string", "1050.75"), ("number", 1050.75)])
async def test_values_survive_dlt_to_the_wire(
    make_sink: SinkFactory, rest_server: FakeRestApi, decimals: str, balance: Any
) -> None:
    rest_server.token = None
    config = {"url": f"{rest_server.url}/v1/contacts", "decimals": decimals}
    sink = make_sink(
        rest_api.SINK_TYPE,
        config,
        mapping={"customer_id": "external_id"}
        | {c: c for c in ROW_SCHEMA.names if c != "customer_id"},
    )

    await sink.write(changes([{**ROW, "op": "insert"}], ROW_SCHEMA), context())

    assert rest_server.records["7"] == {
        "external_id": 7,
        "seen_at": "2024-05-01T12:00:00Z",
        "local_at": "2024-05-01T09:15:00Z",
        "born": "1990-01-31",
        "balance": balance,
        "avatar": "iVBORw==",
        "address": {"city": "Lyon", "at": "2024-01-01T00:00:00Z"},
        "tags": ["vip", "beta"],
        "note": None,
    }


def test_a_value_json_cannot_carry_refuses_its_row_alone() -> None:
    """A timestamp past year 9999 inside a struct used to fail the whole batch with
    OverflowError; now only its row is refused, with the column named."""
    at = pa.array([0, 253_402_387_200_000_000, 86_400_000_000], pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    detail = pa.StructArray.from_arrays([pa.array(["a", "b", "c"]), at], fields=list(STRUCT))
    table = pa.table({"id": [1, 2, 3], "detail": detail})
    converted = convert(table, names={"detail": "details"})
    assert converted.refused == {
        1: "column details.at: a date or timestamp outside years 1-9999, which ISO-8601 "
        "text (and so the JSON wire format) cannot carry"
    }
    assert converted.records == [
        {"id": 1, "detail": {"city": "a", "at": "1970-01-01T00:00:00Z"}},
        None,
        {"id": 3, "detail": {"city": "c", "at": "1970-01-02T00:00:00Z"}},
    ]
    with pytest.raises(ValueError, match=r"row 1: column detail\.at: a date or timestamp"):
        to_records(table)


def test_a_top_level_date_past_year_9999_refuses_its_row() -> None:
    day = pa.array([0, 2_932_897], pa.int32()).cast(pa.date32())
    converted = convert(pa.table({"day": day}))
    assert list(converted.refused) == [1]
    assert converted.records == [{"day": "1970-01-01"}, None]


def test_any_other_value_that_fails_to_convert_refuses_only_its_row() -> None:
    """The column is converted value by value to find it (no Python timedelta holds 10**15
    seconds)."""
    table = pa.table({"id": [1, 2], "took": pa.array([5, 10**15], pa.duration("s"))})
    converted = convert(table)
    assert converted.records == [{"id": 1, "took": 5.0}, None]
    assert converted.refused[1].startswith("column took: cannot be converted (OverflowError")
