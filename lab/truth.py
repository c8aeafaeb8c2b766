"""Compare gatewatch's alerts with the generator's ground truth, and read CRS blocks.

The ground truth lists actors; an alert belongs to an actor when its
``client_ip`` is one of the actor's addresses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.gateway import CRS_BLOCKING_RULE


@dataclass
class ActorOutcome:
    """The rules that alerted on one actor, beside the rules the ground truth expects."""

    name: str
    kind: str
    expected: str
    rules: list[str]
    fired: set[str] = field(default_factory=set)

    @property
    def missing(self) -> set[str]:
        return set(self.rules) - self.fired

    @property
    def unexpected(self) -> set[str]:
        return self.fired - set(self.rules)

    @property
    def verdict(self) -> str:
        if self.expected == "never":
            return "quiet" if not self.fired else "false positive"
        if self.expected == "later":
            return "caught" if self.fired else "not caught (expected later)"
        return "caught" if not self.missing else "missed"


def score(truth: dict[str, Any], alerts: list[dict[str, Any]]) -> list[ActorOutcome]:
    """Return one outcome per actor of ``truth`` for the given alerts."""
    outcomes = []
    for actor in truth["actors"]:
        addresses = set(actor["addresses"])
        fired = {alert["rule"] for alert in alerts if alert["client_ip"] in addresses}
        outcomes.append(ActorOutcome(actor["name"], actor["kind"], actor["expected"], list(actor["rules"]), fired))
    return outcomes


def unowned_alerts(truth: dict[str, Any], alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return alerts whose client address belongs to no actor."""
    addresses = {address for actor in truth["actors"] for address in actor["addresses"]}
    return [alert for alert in alerts if alert["client_ip"] not in addresses]


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
