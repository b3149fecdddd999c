"""`floe-egress run` is a command of the installed entry point (what systemd starts)."""

from __future__ import annotations

import subprocess

from tests.integration.daemon.harness import FLOE_EGRESS


def test_floe_egress_run_is_a_command() -> None:
    result = subprocess.run(
        [str(FLOE_EGRESS), "run", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, (
        "`floe-egress run` is not accepted: floe_egress/cli.py lists `run` in COMMANDS but "
        "_parser() does not add it (add command('run', ...))\n" + result.stderr
    )
    assert "--config" in result.stdout
