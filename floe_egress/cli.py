"""The `floe-egress` command line: a thin shell over config, changes, sinks, state and daemon.

Exit codes: 0 success; 1 a destination failed (verify: differences found); 2 the
configuration is invalid (verify: nothing to compare with); 130 interrupted. Only this
module exits the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from floe_egress import __version__, logs
from floe_egress.cli_output import print_json, print_results
from floe_egress.config import ConfigValidationError, LoadedConfig, default_config_path
from floe_egress.config.loader import MANIFEST_ENV_VAR
from floe_egress.config.models import Destination, FloeSpec
from floe_egress.config.secrets import redact
from floe_egress.errors import ConfigError, EgressError
from floe_egress.spec import compile_artifacts, load_spec, spec_schema, spec_warnings

if TYPE_CHECKING:
    from floe_egress.cli_progress import Watch

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="floe-egress",
        description="Reverse ETL for the floe lakehouse: sync exact Iceberg row changes "
        "to APIs and databases.",
    )
    parser.add_argument("--version", action="version", version=f"floe-egress {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--config",
            "-c",
            type=Path,
            default=None,
            help="floe.yaml, a floe platform spec or compiled artifacts "
            "(default: $FLOE_EGRESS_CONFIG or ./floe.yaml)",
        )
        p.add_argument(
            "--manifest",
            type=Path,
            default=None,
            help="a floe platform spec's manifest (default: its platform.manifest)",
        )
        return p

    command("validate", "Check floe.yaml; print every problem with its line; exit 2 if any.")
    p = command("compile", "Write versioned compiled artifacts (secrets stay references).")
    p.add_argument("-o", "--output", type=Path, default=Path("compiled_artifacts.json"))
    sub.add_parser("schema", help="Print the JSON Schema of floe.yaml (for editors).")
    sub.add_parser("sinks", help="List the available sink types and the modes each supports.")
    for name, text in (
        ("plan", "Show what a sync would send (counts and sample rows); sends nothing."),
        ("sync", "Run one cycle of every (or one) destination, then exit."),
    ):
        p = command(name, text)
        p.add_argument("--destination", "-d", help="only this destination")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "sync":
            p.add_argument(
                "--force",
                action="store_true",
                help="send even when the delete guard (max_delete_fraction) trips",
            )
    p = command("status", "Checkpoint, lag, last run and failed rows per destination.")
    p.add_argument("--json", action="store_true")
    p = command("resync", "Make the next cycle of a destination a full resync (or a diff).")
    p.add_argument("destination")
    p.add_argument(
        "--from-snapshot",
        type=int,
        default=None,
        help="diff from this snapshot instead of a full resync",
    )
    p = command("failures", "List the failed rows of a destination; --retry retries them now.")
    p.add_argument("destination")
    p.add_argument("--retry", action="store_true")
    p.add_argument("--json", action="store_true")
    p = command("verify", "Compare a destination with its table at the checkpoint.")
    p.add_argument("destination")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--repair", action="store_true", help="queue the differing keys for the next cycle"
    )
    command("run", "Run the daemon: scheduler, HTTP endpoints, systemd notify.")
    p = sub.add_parser(
        "demo",
        help="Build a sample Gold table, sync it to a local DuckDB "
        "file, change it, sync again; no server, no network.",
    )
    p.add_argument("--dir", type=Path, default=Path(".floe-egress/demo"))
    return parser


def _load(args: argparse.Namespace, *, check_secrets: bool = False) -> LoadedConfig:
    path = args.config or default_config_path()
    return load_spec(path, check_secrets=check_secrets, manifest=args.manifest)


def _destinations(spec: FloeSpec, name: str | None) -> list[Destination]:
    if name is not None:
        return [spec.destination(name)]
    return [d for d in spec.ingestion.destinations if d.enabled]


def cmd_validate(args: argparse.Namespace) -> int:
    from floe_egress.table_checks import table_problems

    loaded = _load(args, check_secrets=True)
    count = len(loaded.spec.ingestion.destinations)
    errors, skipped = table_problems(loaded)
    if errors:
        raise ConfigValidationError(str(loaded.path), errors)
    for warning in [*spec_warnings(loaded), *skipped]:
        print(f"warning: {warning.render(str(loaded.path))}", file=sys.stderr)
    print(f"{loaded.path}: valid ({count} destination{'s' if count != 1 else ''})")
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded.literal_secrets:
        raise ConfigValidationError(str(loaded.path), list(loaded.literal_secrets))
    artifacts = compile_artifacts(loaded)
    args.output.write_text(json.dumps(artifacts, indent=2) + "\n")
    print(
        f"wrote {args.output} (format {artifacts['version']}, "
        f"{len(artifacts['destinations'])} destination"
        f"{'s' if len(artifacts['destinations']) != 1 else ''})"
    )
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print_json(spec_schema())
    return EXIT_OK


def cmd_sinks(args: argparse.Namespace) -> int:
    from floe_egress.sinks.registry import sink_types

    for name, sink_type in sorted(sink_types().items()):
        modes = ", ".join(
            m for m in ("upsert", "update", "insert", "mirror", "append") if m in sink_type.modes
        )
        print(
            f"{name:12} modes: {modes}"
            + (f"  - {sink_type.description}" if sink_type.description else "")
        )
    return EXIT_OK


async def _cycles(
    loaded: LoadedConfig,
    names: list[Destination],
    *,
    send: bool,
    force: bool = False,
    watch: Watch | None = None,
) -> list[Any]:
    """The cycles (or previews) of `names` at once; `watch` gives each sending cycle
    what shows its progress."""
    from floe_egress.daemon.cycle import run_cycle
    from floe_egress.daemon.preview import preview_cycle
    from floe_egress.daemon.progress import NO_PROGRESS
    from floe_egress.daemon.runtime import Runtime

    runtime = Runtime(loaded.spec)
    try:
        if send:
            progress = watch or (lambda name: NO_PROGRESS)
            cycles = (run_cycle(runtime, d, force=force, progress=progress(d.name)) for d in names)
            return list(await asyncio.gather(*cycles))
        return list(await asyncio.gather(*(preview_cycle(runtime, d) for d in names)))
    finally:
        await runtime.close()


def cmd_sync(args: argparse.Namespace) -> int:
    from floe_egress.cli_progress import progress_bars

    loaded = _load(args)
    dests = _destinations(loaded.spec, args.destination)
    with progress_bars(sys.stderr, enabled=not args.json) as watch:
        results = asyncio.run(_cycles(loaded, dests, send=True, force=args.force, watch=watch))
    if args.force:
        _hand_force_to_holders(loaded, [r for r in results if r.status == "skipped"])
    print_results(results, as_json=args.json, verb="sent")
    return _exit_code(results)


def _hand_force_to_holders(loaded: LoadedConfig, skipped: Sequence[Any]) -> None:
    """`--force` for a destination another process (the daemon) is syncing: its next
    cycle there overrides the delete guard once."""
    if not skipped:
        return
    from floe_egress.daemon.runtime import Runtime

    runtime = Runtime(loaded.spec)
    try:
        for result in skipped:
            runtime.store.request_force(result.destination)
            result.reason = (
                "--force was handed to the process holding it: its next cycle overrides "
                "the delete guard once"
            )
    finally:
        asyncio.run(runtime.close())


def cmd_plan(args: argparse.Namespace) -> int:
    loaded = _load(args)
    dests = _destinations(loaded.spec, args.destination)
    results = asyncio.run(_cycles(loaded, dests, send=False))
    print_results(results, as_json=args.json, verb="would send")
    return _exit_code(results)


def _exit_code(results: Sequence[Any]) -> int:
    """A destination that failed, or was skipped because another process holds it,
    did not sync: the command did not do what it was asked."""
    return EXIT_FAILED if any(r.status in ("failed", "skipped") for r in results) else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from floe_egress.cli_status import print_status
    from floe_egress.daemon.health import collect_status

    loaded = _load(args)
    statuses = collect_status(loaded.spec)
    if args.json:
        print_json(statuses)
        return EXIT_OK
    print_status(statuses, now=time.time())
    return EXIT_OK


def cmd_resync(args: argparse.Namespace) -> int:
    from floe_egress.daemon.runtime import Runtime

    loaded = _load(args)
    dest = loaded.spec.destination(args.destination)
    runtime = Runtime(loaded.spec)
    try:
        if args.from_snapshot is not None:
            table = runtime.load_table(dest)
            if table.snapshot_by_id(args.from_snapshot) is None:
                known = ", ".join(str(s.snapshot_id) for s in table.snapshots()[-5:])
                raise ConfigError(
                    f"table {dest.source_table} has no snapshot {args.from_snapshot} "
                    f"(expired, or a typo); its latest snapshots: {known or 'none'}"
                )
        runtime.store.request_resync(dest.name, args.from_snapshot)
    finally:
        asyncio.run(runtime.close())
    what = (
        "a full resync"
        if args.from_snapshot is None
        else f"a diff from snapshot {args.from_snapshot}"
    )
    print(f"{dest.name}: the next cycle will be {what}")
    return EXIT_OK


def cmd_failures(args: argparse.Namespace) -> int:
    from floe_egress.daemon.runtime import Runtime

    loaded = _load(args)
    dest = loaded.spec.destination(args.destination)
    results: list[Any] = []
    if args.retry:
        from floe_egress.cli_progress import progress_bars

        runtime = Runtime(loaded.spec)
        try:
            runtime.store.unpark_failed_rows(dest.name)
        finally:
            asyncio.run(runtime.close())
        with progress_bars(sys.stderr, enabled=not args.json) as watch:
            results = asyncio.run(_cycles(loaded, [dest], send=True, watch=watch))
        if not args.json:
            print_results(results, as_json=False, verb="sent")
    runtime = Runtime(loaded.spec)
    try:
        rows = runtime.store.failed_rows(dest.name)
    finally:
        asyncio.run(runtime.close())
    code = _exit_code(results)
    if args.json:
        listing = [r.to_json() for r in rows]
        if args.retry:
            print_json({"retry": [r.to_json() for r in results], "failed_rows": listing})
        else:
            print_json(listing)
        return code
    print(f"{dest.name}: {len(rows)} failed row{'s' if len(rows) != 1 else ''}")
    for r in rows:
        state = "parked (failures --retry to try again)" if r.parked else "will retry"
        print(f"  {r.key_json} {r.op}: {r.reason} (attempts {r.attempts}, {state})")
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    from floe_egress.cli_output import print_verify
    from floe_egress.daemon.verify import verify_destination

    loaded = _load(args)
    dest = loaded.spec.destination(args.destination)
    try:
        report = verify_destination(loaded.spec, dest, repair=args.repair)
    except ConfigError:
        raise
    except EgressError as exc:  # nothing to compare with: not a difference
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    print_verify(report, as_json=args.json)
    return EXIT_OK if report.agrees else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from floe_egress.daemon.service import run_daemon

    if args.manifest is not None:
        # the daemon (re)loads its config itself: the manifest goes with the process
        os.environ[MANIFEST_ENV_VAR] = str(args.manifest.resolve())
    return run_daemon(args.config or default_config_path())


def cmd_demo(args: argparse.Namespace) -> int:
    from floe_egress.demo import run_demo

    return run_demo(args.dir)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "compile": cmd_compile,
    "schema": cmd_schema,
    "sinks": cmd_sinks,
    "plan": cmd_plan,
    "sync": cmd_sync,
    "status": cmd_status,
    "resync": cmd_resync,
    "failures": cmd_failures,
    "verify": cmd_verify,
    "run": cmd_run,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo prints its own story; its cycle logs would only interleave with it.
    level = "WARNING" if args.command == "demo" and args.log_level == "INFO" else args.log_level
    logs.configure(stream=sys.stdout if args.command == "run" else None, level=level)
    try:
        return COMMANDS[args.command](args)
    except ConfigValidationError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except EgressError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
