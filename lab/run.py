"""Run the whole lab by hand: gateway, traffic, gatewatch, alerts.

    python -m lab [--seed 7] [--run-dir DIR] [--serve]

It starts the shop API, nginx with ModSecurity and CRS, and a Slack
stand-in, all on 127.0.0.1. It sends the seeded traffic and runs gatewatch
with the lab's config. It prints the alerts and compares them with the
ground truth, then stops every process it started. With ``--serve`` the gateway
and the stand-in keep running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from lab.gateway import GatewayMissing
from lab.stack import REPO, LabStack
from lab.traffic import DEFAULT_MAX_SECONDS, DEFAULT_SEED, run_traffic
from lab.truth import score, unowned_alerts
from lab.watch import SLACK_CHANNEL, SLACK_TOKEN_ENV, WatchReport, run_gatewatch, write_config

GROUND_TRUTH_NAME = "ground_truth.yaml"


def send_traffic(stack: LabStack, run_dir: Path, seed: int, max_seconds: float) -> dict[str, Any]:
    """Run the generator against ``stack`` and write the ground truth into ``run_dir``."""
    truth = run_traffic(stack.port, seed=seed, max_seconds=max_seconds)
    assert stack.files is not None
    truth["logs"] = {
        "access_log": str(stack.files.access_log),
        "json_log": str(stack.files.json_log),
        "audit_log": str(stack.files.audit_log),
    }
    header = (
        "# Written by lab/traffic.py. expected: now (must alert with every rule in rules), later (not yet "
        "caught), never (normal).\n# allowed: rules that may also alert on the actor, with the reason.\n"
        "# formats: the access log formats in which expected holds; in others the actor counts as later, "
        "for the reason in other_formats.\n"
    )
    (run_dir / GROUND_TRUTH_NAME).write_text(header + yaml.safe_dump(truth, sort_keys=False))
    return truth


def _load_slack_standin() -> type:
    """Import the Slack stand-in that the test suite uses, from tests/slack_standin.py."""
    path = REPO / "tests" / "slack_standin.py"
    spec = importlib.util.spec_from_file_location("slack_standin", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path} not found; run the lab from a gatewatch checkout")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is built.
    sys.modules.setdefault("slack_standin", module)
    spec.loader.exec_module(module)
    return module.SlackStandin


def print_outcome(console: Console, truth: dict[str, Any], report: WatchReport, access_format: str) -> None:
    table = Table(title=f"gatewatch alerts over the {access_format} access log against the ground truth")
    for column in ("actor", "kind", "expected", "rules that alerted", "verdict"):
        table.add_column(column)
    for outcome in score(truth, report.alerts, access_format):
        table.add_row(outcome.name, outcome.kind, outcome.expected, ", ".join(sorted(outcome.fired)) or "-", outcome.verdict)
    console.print(table)
    for alert in unowned_alerts(truth, report.alerts):
        console.print(f"alert that belongs to no actor: {alert['rule']} {alert['group_key']}", markup=False)
    for error in report.errors:
        console.print(f"gatewatch: {error}", markup=False, style="red")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """Raise KeyboardInterrupt, so SIGTERM runs the same cleanup as Ctrl-C."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the traffic generator")
    parser.add_argument("--run-dir", type=Path, help="folder for configs, logs and the database (default: a new temporary folder)")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, help="upper bound on the traffic run, in seconds")
    parser.add_argument("--serve", action="store_true", help="keep the gateway and the Slack stand-in running until Ctrl-C")
    args = parser.parse_args(argv)

    console = Console()
    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="gatewatch-lab-"))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"run folder: {run_dir}", markup=False)

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    slack_standin = _load_slack_standin()
    try:
        with slack_standin(channels={SLACK_CHANNEL}) as slack, LabStack(run_dir) as stack:
            console.print(f"gateway: http://127.0.0.1:{stack.port}/ (Host: shop.lab.test)", markup=False)
            truth = send_traffic(stack, run_dir, args.seed, args.max_seconds)
            console.print(f"ground truth: {run_dir / GROUND_TRUTH_NAME}", markup=False)

            os.environ[SLACK_TOKEN_ENV] = slack.token
            config = write_config(run_dir, slack.base_url)
            console.print(f"gatewatch config: {config}", markup=False)
            # A served lab gets more traffic later, so its windows stay open.
            report = run_gatewatch(config, console, close_windows=not args.serve)
            print_outcome(console, truth, report, "combined")
            console.print(f"Slack stand-in received {len(slack.messages)} messages in {SLACK_CHANNEL}", markup=False)

            if args.serve:
                console.print(
                    f"serving on 127.0.0.1:{stack.port}. Send requests with curl -H 'Host: shop.lab.test' "
                    f"-H 'X-Forwarded-For: 203.0.113.7' http://127.0.0.1:{stack.port}/healthz and run "
                    f"`{SLACK_TOKEN_ENV}={slack.token} gatewatch run -c {config}`. A window is evaluated "
                    "once later traffic moves the watermark past its end. Ctrl-C stops everything.",
                    markup=False,
                )
                threading.Event().wait()
    except GatewayMissing as error:
        console.print(f"cannot start the lab: {error}", markup=False, style="red")
        return 2
    except KeyboardInterrupt:
        console.print("stopped", markup=False)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
