"""AWS WAF (v2) web ACL logs: one JSON object per request the web ACL inspected.

AWS writes ``timestamp`` as Unix milliseconds. Records copied from other
tools sometimes carry an ISO 8601 time instead, which is read as well.
"""

from __future__ import annotations

import polars as pl
from pydantic import field_validator

from gatewatch.connectors._json import (
    EventSettings,
    build_events,
    finish,
    header_list,
    header_value,
    read_json_objects,
    safe_headers_json,
    sql_string,
    text_at,
)
from gatewatch.connectors._time import validate_timezone
from gatewatch.connectors._waf import classify_attack
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# The prepared column with the decoded httpRequest.headers list.
_HEADERS = "_headers"
# Members of httpRequest that fill a column; the others stay in extra.httpRequest.
_REQUEST_MEMBERS = ("clientIp", "country", "headers", "uri", "args", "httpVersion", "httpMethod", "requestId")
# Headers that fill a column; they are left out of extra.headers.
_COLUMN_HEADERS = ("host", "user-agent", "referer", "x-forwarded-for")

class AwsWafOptions(ConnectorOptions):
    """Options of the aws_waf connector."""

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


class AwsWafConnector(Connector):
    """AWS WAF web ACL logs (JSON lines)."""

    name = "aws_waf"
    aliases = ("awswaf", "aws_wafv2")
    options_model = AwsWafOptions
    options: AwsWafOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        chunk = read_json_objects(
            lines,
            _values(),
            consumed_keys=("timestamp", "httpRequest", "action", "terminatingRuleId", "responseCodeSent"),
            prepared={
                # The members read by several values, each parsed once.
                "_parts": "json_extract(doc, ['$.terminatingRuleMatchDetails', '$.ruleGroupList', "
                "'$.nonTerminatingMatchingRules', '$.rateBasedRuleList', '$.labels', '$.terminatingRuleType', "
                "'$.httpRequest', '$.httpRequest.headers'])",
                _HEADERS: header_list("_parts[8]"),
            },
        )
        events, event_rejects = build_events(
            chunk.objects,
            _roles(),
            EventSettings(
                timezone=self.options.timezone,
                time_format="auto",
                time_field="timestamp",
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
            raw_extra_members={"headers": pl.col("_headers_json"), "httpRequest": pl.col("_request_rest")},
        )
        events, rejects = finish(events, event_rejects, chunk.rejects)
        return ParseResult.from_frames(events, rejects)


def _values() -> dict[str, str]:
    """Return the values to read from each record, as DuckDB expressions."""
    # The terminating rule's name, unless it is the web ACL's default action.
    named_rule = "nullif(json_extract_string(doc, '$.terminatingRuleId'), 'Default_Action')"
    request_members = "[" + ", ".join(sql_string(name) for name in _REQUEST_MEMBERS) + "]"
    return {
        "ts": text_at("timestamp"),
        "client_ip": text_at("httpRequest", "clientIp"),
        "country": text_at("httpRequest", "country"),
        "path": text_at("httpRequest", "uri"),
        "query": text_at("httpRequest", "args"),
        "http_version": text_at("httpRequest", "httpVersion"),
        "method": text_at("httpRequest", "httpMethod"),
        "request_id": text_at("httpRequest", "requestId"),
        "host": header_value(_HEADERS, "host"),
        "user_agent": header_value(_HEADERS, "user-agent"),
        "referer": header_value(_HEADERS, "referer"),
        "forwarded_for": header_value(_HEADERS, "x-forwarded-for"),
        "authorization": header_value(_HEADERS, "authorization"),
        "api_key": header_value(_HEADERS, "x-api-key"),
        "status": text_at("responseCodeSent"),
        "waf_action": text_at("action"),
        "waf_rule_id": text_at("terminatingRuleId"),
        "_conditions": (
            "array_to_string(list_transform(try(json_transform(_parts[1], "
            """'[{"conditionType":"VARCHAR","location":"VARCHAR"}]')), """
            "lambda m: m.conditionType || coalesce(' in ' || m.location, '')), '; ')"
        ),
        "_labels": "array_to_string(json_extract_string(_parts[5], '$[*].name'), ', ')",
        # The rule that ended the evaluation, as text, for attack_class:
        # what it matched (condition types) first, then its names.
        "_terminating_match": "_parts[1]::VARCHAR",
        "_terminating_text": f"concat_ws(' ', json_extract(_parts[2], '$[*].terminatingRule'), {named_rule})",
        # Every member that names a matched rule, for attack_class when the
        # terminating rule names no class (a COUNT match, a label).
        "_rule_text": f"concat_ws(' ', _parts[1], _parts[6], _parts[2], _parts[3], _parts[4], _parts[5], {named_rule})",
        "_headers_json": safe_headers_json(_HEADERS, _COLUMN_HEADERS),
        "_request_rest": (
            """nullif(to_json(map_from_entries(list_filter(map_entries(try(json_transform(_parts[7], """
            """'"MAP(VARCHAR, JSON)"'))), """
            f"lambda e: NOT list_contains({request_members}, e.key)))), '{{}}')"
        ),
    }


def _roles() -> dict[str, pl.Expr]:
    """Return the role of each value read by ``_values``."""
    roles = {
        role: pl.col(role)
        for role in (
            "ts", "client_ip", "country", "path", "query", "http_version", "method", "host", "user_agent",
            "referer", "forwarded_for", "authorization", "api_key", "status", "waf_action", "waf_rule_id",
        )
    }
    # Some records carry the text "null" for a missing request id.
    roles["request_id"] = pl.when(pl.col("request_id") != "null").then(pl.col("request_id"))
    roles["waf_message"] = pl.coalesce(
        pl.when(pl.col("_conditions") != "").then(pl.col("_conditions")),
        pl.when(pl.col("_labels") != "").then(pl.col("_labels")),
    )
    roles["attack_class"] = pl.coalesce(
        classify_attack(pl.col("_terminating_match").fill_null("")),
        classify_attack(pl.col("_terminating_text").fill_null("")),
        classify_attack(pl.col("_rule_text").fill_null("")),
    )
    return roles
