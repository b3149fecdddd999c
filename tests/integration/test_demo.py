"""`floe-egress demo` runs on the embedded defaults and ends with the changed rows sent."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from floe_egress.cli import main


def test_demo_sends_exactly_the_changed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "sent 6 inserted, 0 updated, 0 deleted" in out
    assert "sent 1 inserted, 1 updated, 1 deleted" in out
    assert "   delete customer 5\n" in out and "None None" not in out  # the key, not nulls
    assert "The second sync sent exactly the 3 changed rows; the third sent nothing." in out
    con = duckdb.connect(str(tmp_path / "demo" / "destination.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT customer_id, plan FROM crm.customers ORDER BY customer_id"
    ).fetchall()
    con.close()
    assert rows == [(1, "pro"), (2, "free"), (3, "enterprise"), (4, "pro"), (6, "team"), (7, "pro")]


def test_demo_refuses_a_folder_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "was not made by `floe-egress demo`" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_can_run_twice_in_its_own_folder(tmp_path: Path) -> None:
    assert main(["demo", "--dir", str(tmp_path / "d")]) == 0
    assert main(["demo", "--dir", str(tmp_path / "d")]) == 0
