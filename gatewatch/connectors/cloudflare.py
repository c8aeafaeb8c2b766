"""Cloudflare Logpush JSON lines: the ``http_requests`` and ``firewall_events`` datasets.

Both datasets share the ``Client*`` field names, so one connector reads
either, record by record. The time is ``EdgeStartTimestamp`` (http_requests)
or ``Datetime`` (firewall_events). A Logpush job writes it as RFC 3339,
Unix seconds or Unix nanoseconds depending on its ``timestamp_format``, as
a number or a string, so the form is detected per value.
"""

from __future__ import annotations

import polars as pl
from pydantic import field_validator

from gatewatch.connectors._json import (
    EventSettings,
    build_events,
    finish,
    header_map_value,
    read_json_objects,
    safe_header_map_json,
    text_at,
)
from gatewatch.connectors._time import validate_timezone
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# Logpush field -> role, for the fields that fill one column each.
FIELD_ROLES: dict[str, str] = {
    "ClientIP": "client_ip",
    "ClientRequestMethod": "method",
    "ClientRequestScheme": "scheme",
    "ClientRequestHost": "host",
    "ClientRequestURI": "target",
    "ClientRequestPath": "path",
    "ClientRequestQuery": "query",
    "ClientRequestProtocol": "http_version",
    "EdgeResponseStatus": "status",
    "EdgeResponseBytes": "bytes_sent",
    "ClientRequestBytes": "bytes_received",
    "ClientRequestUserAgent": "user_agent",
    "ClientRequestReferer": "referer",
    "RayID": "request_id",
    "ClientCountry": "country",
    "ClientASN": "asn",
}

# Cloudflare WAF attack scores run from 1 (attack) to 99 (clean); 1-20 is
# the range Cloudflare labels "attack".
ATTACK_SCORE_FIELDS: dict[str, str] = {
    "WAFSQLiAttackScore": "sqli",
    "WAFXSSAttackScore": "xss",
    "WAFRCEAttackScore": "rce",
}
ATTACK_SCORE_LIMIT = 20

# firewall_events "Source" values that name a kind of attack.
SOURCE_CLASSES: dict[str, str] = {
    "l7ddos": "ddos",
    "dos": "ddos",
    "ratelimit": "rate_limit",
    "bic": "bot",
    "botfight": "bot",
    "botmanagement": "bot",
    "hot": "ip_reputation",
    "iprep": "ip_reputation",
    "securitylevel": "ip_reputation",
}


class CloudflareOptions(ConnectorOptions):
    """Options of the cloudflare connector."""

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


def _first_set(*sql: str) -> str:
    """Return the first of ``sql`` that is neither null, empty nor "unknown"."""
    return "coalesce(" + ", ".join(f"nullif(nullif({part}, ''), 'unknown')" for part in sql) + ")"


class CloudflareConnector(Connector):
    """Cloudflare Logpush http_requests and firewall_events records."""

    name = "cloudflare"
    aliases = ("cloudflare_logpush", "cloudflare_http_requests", "cloudflare_firewall_events")
    options_model = CloudflareOptions
    options: CloudflareOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        request_headers = "'$.RequestHeaders'"
        values = {field: text_at(field) for field in FIELD_ROLES}
        values.update(
            {
                "_ts": "coalesce(json_extract_string(doc, '$.EdgeStartTimestamp'), json_extract_string(doc, '$.Datetime'))",
                "_waf_action": _first_set(
                    text_at("Action"), text_at("SecurityAction"), "json_extract_string(doc, '$.SecurityActions[0]')",
                    text_at("WAFAction"),
                ),
                "_waf_rule_id": _first_set(
                    text_at("RuleID"), text_at("SecurityRuleID"), "json_extract_string(doc, '$.SecurityRuleIDs[0]')",
                    text_at("WAFRuleID"),
                ),
                "_waf_message": _first_set(
                    text_at("Description"), text_at("SecurityRuleDescription"), text_at("WAFRuleMessage")
                ),
                "_source": _first_set(text_at("Source"), "json_extract_string(doc, '$.SecuritySources[0]')"),
                "_authorization": header_map_value(request_headers, "authorization"),
                "_api_key": header_map_value(request_headers, "x-api-key"),
                "_forwarded_for": header_map_value(request_headers, "x-forwarded-for"),
                "_request_headers": safe_header_map_json(request_headers),
                **{f"_{field}": text_at(field) for field in ATTACK_SCORE_FIELDS},
            }
        )
        consumed = (
            *FIELD_ROLES, "EdgeStartTimestamp", "Datetime", "Action", "RuleID", "Description", "RequestHeaders"
        )
        chunk = read_json_objects(lines, values, consumed)

        roles = {role: pl.col(field) for field, role in FIELD_ROLES.items()}
        roles.update(
            ts=pl.col("_ts"),
            waf_action=pl.col("_waf_action"),
            waf_rule_id=pl.col("_waf_rule_id"),
            waf_message=pl.col("_waf_message"),
            authorization=pl.col("_authorization"),
            api_key=pl.col("_api_key"),
            forwarded_for=pl.col("_forwarded_for"),
            attack_class=pl.coalesce(_attack_class_from_scores(), _attack_class_from_source()),
        )
        events, event_rejects = build_events(
            chunk.objects,
            roles,
            EventSettings(
                timezone=self.options.timezone,
                time_format="auto",
                time_field="EdgeStartTimestamp or Datetime",
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
            raw_extra_members={"RequestHeaders": pl.when(pl.col("_request_headers") != "{}").then(pl.col("_request_headers"))},
        )
        events, rejects = finish(events, event_rejects, chunk.rejects)
        return ParseResult.from_frames(events, rejects)


def _attack_class_from_scores() -> pl.Expr:
    """Return the class of the lowest WAF attack score at or below the limit."""
    scores = {field: pl.col(f"_{field}").cast(pl.Float64, strict=False) for field in ATTACK_SCORE_FIELDS}
    lowest = pl.min_horizontal(list(scores.values()))
    result = pl.lit(None, dtype=pl.String)
    for field, attack_class in reversed(ATTACK_SCORE_FIELDS.items()):
        result = pl.when(scores[field] == lowest).then(pl.lit(attack_class)).otherwise(result)
    return pl.when(lowest <= ATTACK_SCORE_LIMIT).then(result)


def _attack_class_from_source() -> pl.Expr:
    return pl.col("_source").str.to_lowercase().replace_strict(SOURCE_CLASSES, default=None, return_dtype=pl.String)
