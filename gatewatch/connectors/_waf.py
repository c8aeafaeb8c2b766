"""Attack classes named by WAF rule ids, condition types and labels."""

from __future__ import annotations

import polars as pl

# Patterns over condition types, rule ids and label names of AWS WAF managed
# rules and Cloud Armor preconfigured rules. They are tried in order, and the
# first that matches gives attack_class.
ATTACK_CLASS_PATTERNS: tuple[tuple[str, str], ...] = (
    ("sqli", r"(?i)SQL_INJECTION|SQLi"),
    ("xss", r"(?i)\bXSS\b|_XSS|XSS_|CrossSiteScripting|cross-site-scripting"),
    ("rce", r"(?i)Log4J|RCE|Shell|command.?injection|JavaDeserialization|\bjava\b|nodejs|PHP|POSIX|Windows"),
    ("lfi", r"(?i)LFI|path.?traversal|RestrictedExtensions"),
    ("rfi", r"(?i)RFI"),
    ("ssrf", r"(?i)SSRF|MetaData"),
    ("bot", r"(?i)bot-control|BotControl|BadBots|NoUserAgent|\bbot\b|SignalAutomated|signal:automated"),
    ("admin_access", r"(?i)AdminProtection"),
    ("scanner", r"(?i)scannerdetection"),
    ("protocol_attack", r"(?i)protocolattack|methodenforcement"),
    ("session_fixation", r"(?i)sessionfixation"),
    ("ip_reputation", r"(?i)IPReputation|AnonymousIp|HostingProvider|reputation"),
    ("ddos", r"(?i)DDoS"),
    ("rate_limit", r"(?i)RATE_BASED|rate-based"),
    ("size_restriction", r"(?i)SizeRestrictions|SIZE_CONSTRAINT"),
)


def classify_attack(text: pl.Expr) -> pl.Expr:
    """Return the attack class named by WAF rule text, or null when no pattern matches."""
    result = pl.lit(None, dtype=pl.String)
    for attack_class, pattern in reversed(ATTACK_CLASS_PATTERNS):
        result = pl.when(text.str.contains(pattern)).then(pl.lit(attack_class)).otherwise(result)
    return result
