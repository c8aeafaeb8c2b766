"""Run gatewatch over the lab's logs, the way an operator's config would.

``write_config`` turns the ``lab/gatewatch.yaml`` template into a config in
the run folder. ``run_gatewatch`` runs one normal tick (ingest, evaluate up
to the watermark, deliver) and then closes the remaining windows, because
the lab's traffic ends after seconds while the rules' windows last up to an
hour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from gatewatch.config import BUILTIN_RULES, Config, load_config
from gatewatch.connectors import connector_names
from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules
from gatewatch.errors import GatewatchError
from gatewatch.notify import DeliveryReport, build_notifier, deliver_pending
from gatewatch.runner import TickReport, run_lock, run_tick
from gatewatch.store import Store

TEMPLATE = Path(__file__).with_name("gatewatch.yaml")
SLACK_TOKEN_ENV = "LAB_SLACK_TOKEN"
SLACK_CHANNEL = "C0LABALERTS"
AUDIT_CONNECTOR = "modsecurity"
ACCESS_LOG_SOURCES = {
    "combined": {"name": "edge", "format": "combined", "path": "gateway/logs/access.log",
                 "options": {"trailing_fields": ["http_x_forwarded_for", "request_id"]}},
    "nginx_json": {"name": "edge", "format": "nginx_json", "path": "gateway/logs/access.json"},
}
AUDIT_SOURCE = {"name": "waf", "format": AUDIT_CONNECTOR, "path": "gateway/logs/modsec_audit.json"}


@dataclass
class WatchReport:
    """The result of one gatewatch pass over the lab's logs."""

    tick: TickReport
    closing: DeliveryReport | None
    errors: list[GatewatchError]
    alerts: list[dict[str, Any]]


def audit_connector_available() -> bool:
    """Return whether this gatewatch registers a connector for ModSecurity audit logs."""
    return AUDIT_CONNECTOR in connector_names()


def write_config(
    run_dir: Path,
    slack_base_url: str | None,
    access_format: str = "combined",
    include_audit_log: bool | None = None,
) -> Path:
    """Write ``gatewatch-<access_format>.yaml`` into ``run_dir`` from the template and return its path.

    ``include_audit_log`` defaults to whether the modsecurity connector is
    registered. Without ``slack_base_url`` the Slack notifier is left out.
    """
    data = yaml.safe_load(TEMPLATE.read_text())
    data["database"] = f"gatewatch-{access_format}.duckdb"
    data["sources"] = [ACCESS_LOG_SOURCES[access_format]]
    if include_audit_log is None:
        include_audit_log = audit_connector_available()
    if include_audit_log:
        data["sources"].append(AUDIT_SOURCE)
    notifiers = []
    for notifier in data["notifiers"]:
        if notifier["type"] == "slack":
            if slack_base_url is None:
                continue
            notifier["base_url"] = slack_base_url
        notifiers.append(notifier)
    data["notifiers"] = notifiers
    path = run_dir / f"gatewatch-{access_format}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_gatewatch(config_path: Path, console: Console, close_windows: bool = True) -> WatchReport:
    """Run one tick; with ``close_windows``, also close every window up to the end of the logs and deliver again.

    Leave ``close_windows`` off when more traffic will follow, because later
    runs do not evaluate events older than the closed windows.
    """
    config = load_config(config_path)
    database = config.resolve(config.database)
    closing: DeliveryReport | None = None
    errors: list[GatewatchError] = []
    with run_lock(database):
        tick = run_tick(config, console)
        if close_windows:
            closing, errors = _close_windows(config, console)
    return WatchReport(tick=tick, closing=closing, errors=[*tick.errors, *errors], alerts=stored_alerts(database))


def _close_windows(config: Config, console: Console) -> tuple[DeliveryReport | None, list[GatewatchError]]:
    """Evaluate each rule up to one window and one step past the newest event, then deliver.

    This treats the logs as finished: a live deployment closes these windows
    when later traffic moves the watermark, which the lab does not wait for.
    Flatline rules are skipped, because no later traffic will come.
    NOTE: it moves each rule's evaluated_to past the newest event, so lines
    appended to the same logs afterwards would be reported as late.
    """
    rule_set = load_rules([loc if loc == BUILTIN_RULES else str(config.resolve(loc)) for loc in config.rules])
    errors: list[GatewatchError] = list(rule_set.errors)
    settings = EvaluationSettings(
        lateness=config.engine.allowed_lateness,
        new_rule_lookback=config.engine.new_rule_lookback,
        evidence_rows=config.engine.evidence_rows,
    )
    notifier_names = [n.name for n in config.notifiers]
    with Store(config.resolve(config.database)) as store:
        newest = store.watermark_source_max()
        if newest is None:
            return None, errors
        for rule in rule_set.rules:
            # A flatline rule fires on a source that stays silent while the
            # watermark moves on. Here every source has ended, so evaluating
            # past the newest event would report each of them as silent.
            if rule.rule.enabled and rule.rule.type != "flatline":
                until = newest + timedelta(microseconds=rule.window_us + rule.every_us)
                evaluate_rule(store, rule, notifier_names, settings, until=until)
        notifiers = {n.name: build_notifier(n, console) for n in config.notifiers}
        return deliver_pending(store.con, notifiers), errors


def stored_alerts(database: Path) -> list[dict[str, Any]]:
    """Return every alert in the store as rule id, group key, client address, alert id and summary.

    An alert grouped by credential_id also gets ``client_ips``: the addresses
    of every stored event that sent that credential.
    """
    with Store(database) as store:
        rows = store.con.execute(
            "SELECT alert_id, rule_id, CAST(group_key AS VARCHAR), summary FROM alerts ORDER BY rule_id, alert_id"
        ).fetchall()
        senders = dict(
            store.con.execute(
                "SELECT credential_id, list(DISTINCT client_ip ORDER BY client_ip) FROM events "
                "WHERE credential_id IS NOT NULL GROUP BY credential_id"
            ).fetchall()
        )
    alerts = []
    for alert_id, rule_id, group_key, summary in rows:
        key = json.loads(group_key)
        alert = {"alert_id": alert_id, "rule": rule_id, "group_key": key, "client_ip": key.get("client_ip"),
                 "summary": summary}
        if "credential_id" in key:
            alert["client_ips"] = senders.get(key["credential_id"], [])
        alerts.append(alert)
    return alerts
