"""Generic REST sink throughput against a local server without a rate limit.

The server (a separate process, so it does not share the client's event loop) accepts
the default wire format and answers with record ids, like a fast API would. Measured:

- sink:     floe-egress's `rest_api` sink as the daemon builds it (direct hand-off, value
            conversion, idempotency keys, retries armed), N rows of 10 columns in one
            write per batch of rows
- baseline: raw aiohttp POSTs of the same number of requests and records, bodies
            pre-serialised (the ceiling for this server on this machine)

Reproduce:  .venv/bin/python bench/sinks_rest.py            (100k rows; ~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(port: int) -> None:
    from aiohttp import web

    async def contacts(request: web.Request) -> web.Response:
        body = await request.json()
        ids = [str(r.get("external_id")) for r in body["records"]]
        return web.json_response({"ids": ids})

    async def probe(_: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/contacts", contacts)
    app.router.add_route("HEAD", "/v1/contacts", probe)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(n: int) -> pa.Table:
    ids = np.arange(n)
    base = np.datetime64("2026-01-01T00:00:00", "us")
    return pa.table(
        {
            "customer_id": pa.array(ids, pa.int64()),
            "email": pa.array([f"user{i}@example.com" for i in ids]),
            "name": pa.array([f"Customer {i}" for i in ids]),
            "plan": pa.array(np.array(["free", "pro", "team"])[ids % 3]),
            "country": pa.array(np.array(["US", "GB", "DE", "FI"])[ids % 4]),
            "score": pa.array(ids % 1000, pa.int32()),
            "balance": pa.array(ids * 0.25, pa.float64()),
            "visits": pa.array(ids % 97, pa.int64()),
            "active": pa.array(ids % 2 == 0),
            "updated_at": pa.array(base + ids.astype("timedelta64[s]"), pa.timestamp("us", "UTC")),
            "_floe_op": pa.array(["insert"] * n),
        }
    )


async def _sink_run(url: str, table: pa.Table, per_request: int, work: Path) -> float:
    from floe_egress.config.models import RetryConfig
    from floe_egress.sinks.base import MIN_ROWS_PER_WRITE, WriteContext
    from floe_egress.sinks.registry import BuildRequest, get_sink_type

    sink_type = get_sink_type("rest_api")
    assert sink_type is not None
    request = BuildRequest(
        destination="bench",
        sink_config=sink_type.config_model.model_validate(
            {"url": url, "max_records_per_request": per_request, "record_ids_path": "ids"}
        ),
        mode="upsert",
        key=("customer_id",),
        field_mapping=None,
        batch_size=None,
        rate_limit=None,
        retry=RetryConfig(),
        work_dir=work,
        allow_private_network=True,  # the API runs on 127.0.0.1
    )
    sink = sink_type.build(request)
    await sink.check()
    batch = MIN_ROWS_PER_WRITE  # as the sync cycle hands rows to a sink
    started = time.perf_counter()
    for index, offset in enumerate(range(0, table.num_rows, batch)):
        context = WriteContext("bench", "upsert", ("customer_id",), None, 1, index)
        report = await sink.write(table.slice(offset, batch), context)
        assert not report.failed
    elapsed = time.perf_counter() - started
    await sink.close()
    return elapsed


async def _raw_run(url: str, table: pa.Table, per_request: int) -> float:
    import aiohttp

    rows = table.drop_columns(["_floe_op"]).to_pylist()
    for r in rows:
        r["updated_at"] = r["updated_at"].isoformat()
    bodies = [
        json.dumps(
            {
                "destination": "bench",
                "snapshot_id": 1,
                "op": "upsert",
                "records": rows[i : i + per_request],
            }
        ).encode()
        for i in range(0, len(rows), per_request)
    ]
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(4)

        async def post(body: bytes) -> None:
            async with (
                semaphore,
                session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response,
            ):
                await response.read()
                assert response.status == 200

        await asyncio.gather(*(post(b) for b in bodies))
    return time.perf_counter() - started


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/v1/contacts"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    table = _rows(args.rows)
    requests = -(-args.rows // args.per_request)
    sink_times, raw_times = [], []
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                sink_times.append(asyncio.run(_sink_run(url, table, args.per_request, Path(tmp))))
            raw_times.append(asyncio.run(_raw_run(url, table, args.per_request)))
    finally:
        server.terminate()
    sink_s, raw_s = statistics.median(sink_times), statistics.median(raw_times)
    result = {
        "rows": args.rows,
        "records_per_request": args.per_request,
        "requests": requests,
        "sink_median_s": round(sink_s, 3),
        "sink_rows_per_s": round(args.rows / sink_s),
        "sink_requests_per_s": round(requests / sink_s),
        "raw_median_s": round(raw_s, 3),
        "raw_rows_per_s": round(args.rows / raw_s),
        "raw_requests_per_s": round(requests / raw_s),
        "sink_runs_s": [round(t, 3) for t in sink_times],
        "raw_runs_s": [round(t, 3) for t in raw_times],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
