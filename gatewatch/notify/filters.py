"""Notifier filters: a minimum severity and rule id patterns."""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import BaseModel, Field

SEVERITY_ORDER = ("low", "medium", "high", "critical")


class NotifierFilter(BaseModel):
    """Filter settings shared by every notifier type.

    ``rules`` and ``exclude_rules`` are shell-style patterns over rule ids
    (``credential-*``). An alert goes to the notifier when its severity is at
    least ``min_severity``, its rule matches one of ``rules`` (when given)
    and none of ``exclude_rules``.
    """

    min_severity: Literal["low", "medium", "high", "critical"] = "low"
    rules: list[str] = Field(default_factory=list)
    exclude_rules: list[str] = Field(default_factory=list)

    def accepts(self, rule_id: str, severity: str) -> bool:
        """Tell whether alerts of rule ``rule_id`` with ``severity`` go to this notifier."""
        level = severity.lower()
        if level in SEVERITY_ORDER and SEVERITY_ORDER.index(level) < SEVERITY_ORDER.index(self.min_severity):
            return False
        if self.rules and not any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in self.rules):
            return False
        return not any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in self.exclude_rules)
