"""``python -m hil run SCENARIO`` and ``python -m hil check SCENARIO``.

Exit codes: 0 every expectation met and false alarms within the allowance; 1 otherwise (or the
gateway died during the run); 2 bad input, a part of the rig that could not be set up, or an
interrupted run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from edgetwin.cli import positive_number
from hil import report
from hil.procs import SetupError
from hil.runner import Options, RunResult, run
from hil.scenario import Loaded, ScenarioError, load_scenario


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m hil", description="Run HIL fault scenarios against an edgetwin gateway."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_p = sub.add_parser("run", help="run a scenario and score what the gateway reported")
    run_p.add_argument("scenario", type=Path, help="scenario file (hil/scenarios/*.toml)")
    run_p.add_argument(
        "--broker", metavar="URL", help="use this MQTT broker (default: start a local mosquitto)"
    )
    run_p.add_argument(
        "--rig",
        action="store_true",
        help="real devices: start no stub; the operator applies the faults on the printed timeline",
    )
    run_p.add_argument("--report", type=Path, metavar="OUT.json", help="write a JSON report")
    run_p.add_argument(
        "--scale",
        type=positive_number,
        default=1.0,
        help="multiply every scenario time and the gateway's poll pacing by F (default 1)",
    )
    run_p.add_argument(
        "--lead",
        type=positive_number,
        default=6.0,
        help="simulated device: seconds between the stub's start and t = 0 (default %(default)s)",
    )
    run_p.add_argument(
        "--ready-timeout",
        type=positive_number,
        default=120.0,
        help="--rig: seconds to wait for every device online before t = 0 (default %(default)s)",
    )
    run_p.add_argument(
        "--workdir", type=Path, help="keep the generated config and the logs here (default: temp)"
    )
    check_p = sub.add_parser("check", help="validate scenario files")
    check_p.add_argument("scenarios", type=Path, nargs="+")
    return parser


async def _run(loaded: Loaded, opts: Options) -> RunResult:
    # SIGTERM unwinds like Ctrl-C: the runner stops every child before it exits.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(loaded, opts)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    # Piped to a file or CI log, rich would wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 120)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
    try:
        if args.command == "check":
            for path in args.scenarios:
                loaded = load_scenario(path)
                console.print(
                    f"{path}: ok ({loaded.scenario.name}, {len(loaded.scenario.faults)} faults)"
                )
            return 0
        loaded = load_scenario(args.scenario)
        opts = Options(
            broker=args.broker,
            rig=args.rig,
            scale=args.scale,
            lead=args.lead,
            ready_timeout=args.ready_timeout,
            workdir=args.workdir,
            console=console,
        )
        result = asyncio.run(_run(loaded, opts))
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(problem, highlight=False, markup=False, soft_wrap=True)
        return 2
    except SetupError as exc:
        err.print(f"set-up failed: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("interrupted: every process stopped; no score", highlight=False)
        return 2
    report.show(result, console)
    if args.report is not None:
        report.write(result, args.report, source=args.scenario, scale=args.scale)
        console.print(f"report: {args.report}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
