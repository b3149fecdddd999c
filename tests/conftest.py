import os

# dlt must not try to reach its telemetry endpoint from tests (no network here).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

pytest_plugins = ["tests.fixtures.egress"]
