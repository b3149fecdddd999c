"""PostgreSQL load files written by pyarrow and handed to dlt as they are.

For an Arrow table dlt writes a parquet file (extract), then rewrites it as CSV through
a Python file object (normalize): two thirds of an initial load's time went there. A
CSV file written natively by pyarrow, in the form dlt's COPY job reads (a header line,
values quoted when needed), is imported into the load package with
`dlt.mark.with_file_import`: dlt still owns the schema, the DDL, the package, the
staging table and the MERGE, and COPYs the file, but converts nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv

from floe_egress.sinks.database.frames import Frame

_OPTIONS = pacsv.WriteOptions(include_header=True, quoting_style="needed")


def csv_import(frame: Frame, directory: Path) -> tuple[list[Any], Path]:
    """The data to give `pipeline.extract`, and the file to delete after the run."""
    import dlt

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.csv"
    pacsv.write_csv(frame.table, str(path), write_options=_OPTIONS)
    item = dlt.mark.with_file_import(
        str(path), "csv", items_count=frame.table.num_rows, hints=frame.table.schema.empty_table()
    )
    return [item], path


__all__ = ["csv_import"]
