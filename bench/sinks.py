"""Delivery benchmarks (issue 4), each in its own process:

- PostgreSQL initial load of 1M rows through the `postgres` sink, with a raw COPY
  baseline and plain dlt for reference (bench/sinks_db.py);
- the generic REST sink against a local server without a rate limit, beside raw
  aiohttp posts (bench/sinks_rest.py).

Reproduce: .venv/bin/python bench/sinks.py      (~4 min; results in bench/RESULTS.md)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    for script, args in (("sinks_db.py", ["--plain"]), ("sinks_rest.py", [])):
        print(f"# {script} {' '.join(args)}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / script), *args], check=False)
        if done.returncode != 0:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
