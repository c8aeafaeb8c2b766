"""Compare gatewatch's alerts with the generator's ground truth, and read CRS blocks.

The ground truth lists actors. An alert belongs to every actor that its
group key names: by ``client_ip`` (one of the actor's addresses), by
``network`` (a network that contains one of them), by ``user_agent`` (one
of the actor's user agents) or by ``credential_id`` (a credential that one of
the actor's addresses sent, as listed in the alert's ``client_ips``). Alerts
grouped by anything else, such as a log source, belong to no actor.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.gateway import CRS_BLOCKING_RULE
from lab.traffic import expectation


@dataclass
class ActorOutcome:
    """The rules that alerted on one actor, beside the rules the ground truth expects."""

    name: str
    kind: str
    expected: str
    rules: list[str]
    fired: set[str] = field(default_factory=set)
    # Rules the ground truth allows besides `rules`, with the reason.
    allowed: dict[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> set[str]:
        return set(self.rules) - self.fired

    @property
    def unexpected(self) -> set[str]:
        return self.fired - set(self.rules) - set(self.allowed)

    @property
    def verdict(self) -> str:
        if self.expected == "never":
            return "quiet" if not self.unexpected else "false positive"
        if self.expected == "later":
            return "caught" if self.fired else "not caught (expected later)"
        return "caught" if not self.missing else "missed"


def alert_belongs_to(actor: dict[str, Any], alert: dict[str, Any]) -> bool:
    """Return whether the group key of ``alert`` names ``actor``."""
    key = alert["group_key"]
    if "client_ip" in key:
        return key["client_ip"] in actor["addresses"]
    if "network" in key:
        network = ipaddress.ip_network(key["network"], strict=False)
        return any(ipaddress.ip_address(address) in network for address in actor["addresses"])
    if "user_agent" in key:
        return key["user_agent"] in actor["user_agents"]
    if "credential_id" in key:
        return any(address in actor["addresses"] for address in alert.get("client_ips", []))
    return False


def score(truth: dict[str, Any], alerts: list[dict[str, Any]], access_format: str) -> list[ActorOutcome]:
    """Return one outcome per actor of ``truth`` for alerts raised over an ``access_format`` access log."""
    outcomes = []
    for actor in truth["actors"]:
        fired = {alert["rule"] for alert in alerts if alert_belongs_to(actor, alert)}
        expected, rules = expectation(actor, access_format)
        outcomes.append(
            ActorOutcome(actor["name"], actor["kind"], expected, rules, fired, dict(actor.get("allowed", {})))
        )
    return outcomes


def unowned_alerts(truth: dict[str, Any], alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return alerts that belong to no actor."""
    return [alert for alert in alerts if not any(alert_belongs_to(actor, alert) for actor in truth["actors"])]


@dataclass(frozen=True)
class AuditEntry:
    """One transaction of the ModSecurity JSON audit log."""

    unique_id: str
    client_ip: str
    uri: str
    status: int
    rule_ids: tuple[str, ...]

    @property
    def blocked_by_crs(self) -> bool:
        """Whether CRS's anomaly rule denied the request; in DetectionOnly mode it only matches."""
        return CRS_BLOCKING_RULE in self.rule_ids and self.status == 403


def read_audit_log(path: Path) -> list[AuditEntry]:
    """Read a ModSecurity v3 audit log written with SecAuditLogFormat JSON (one object per line)."""
    entries = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            transaction = json.loads(line)["transaction"]
            entries.append(
                AuditEntry(
                    unique_id=transaction["unique_id"],
                    client_ip=transaction["client_ip"],
                    uri=transaction["request"]["uri"],
                    status=int(transaction["response"]["http_code"]),
                    rule_ids=tuple(message["details"]["ruleId"] for message in transaction.get("messages", [])),
                )
            )
    return entries
