"""Google Cloud HTTP(S) Load Balancer request logs, as Cloud Logging exports them.

Each line is one LogEntry in JSON: the request in ``httpRequest``, the load
balancer's details in ``jsonPayload`` and the time in ``timestamp``. A
Cloud Armor decision (``jsonPayload.enforcedSecurityPolicy``) fills the WAF
columns.
"""

from __future__ import annotations

import polars as pl
from pydantic import field_validator

from gatewatch.connectors._json import EventSettings, build_events, finish, read_json_objects, text_at
from gatewatch.connectors._time import validate_timezone
from gatewatch.connectors._waf import classify_attack
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# httpRequest member -> role.
REQUEST_ROLES: dict[str, str] = {
    "requestMethod": "method",
    "requestUrl": "target",
    "requestSize": "bytes_received",
    "status": "status",
    "responseSize": "bytes_sent",
    "userAgent": "user_agent",
    "remoteIp": "client_ip",
    "referer": "referer",
    "protocol": "http_version",
}

# Cloud Armor outcomes in the words of the other connectors' waf_action.
OUTCOME_ACTIONS: dict[str, str] = {"DENY": "block", "ACCEPT": "allow"}

# remoteIp may carry a port: "192.0.2.1:443" or "[2001:db8::1]:443".
_PORT_SUFFIX_RE = r"^(?:(?P<v4>\d{1,3}(?:\.\d{1,3}){3}):\d+|\[(?P<v6>[^\]]*)\]:\d+)$"


class GcpLbOptions(ConnectorOptions):
    """Options of the gcp_lb connector."""

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


class GcpLbConnector(Connector):
    """Google Cloud HTTP(S) Load Balancer request logs exported from Cloud Logging."""

    name = "gcp_lb"
    aliases = ("gcp_http_lb", "google_cloud_lb", "gcp_load_balancer")
    options_model = GcpLbOptions
    options: GcpLbOptions

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        policy = ("jsonPayload", "enforcedSecurityPolicy")
        values = {member: text_at("httpRequest", member) for member in REQUEST_ROLES}
        values.update(
            {
                "_ts": text_at("timestamp"),
                "_latency": text_at("httpRequest", "latency"),
                "_trace": text_at("trace"),
                "_insert_id": text_at("insertId"),
                "_outcome": text_at(*policy, "outcome"),
                "_policy_name": text_at(*policy, "name"),
                "_priority": text_at(*policy, "priority"),
                "_expression_ids": "array_to_string(json_extract_string(doc, '$.jsonPayload.enforcedSecurityPolicy.preconfiguredExprIds[*]'), ',')",
                "_status_details": text_at("jsonPayload", "statusDetails"),
            }
        )
        consumed = ["timestamp", "trace", *(("httpRequest", member) for member in (*REQUEST_ROLES, "latency"))]
        chunk = read_json_objects(lines, values, consumed)

        remote = pl.col("remoteIp").str.extract_groups(_PORT_SUFFIX_RE)
        expression_ids = pl.when(pl.col("_expression_ids") != "").then(pl.col("_expression_ids"))
        outcome = pl.col("_outcome").str.to_uppercase()
        roles = {role: pl.col(member) for member, role in REQUEST_ROLES.items()}
        roles.update(
            ts=pl.col("_ts"),
            client_ip=pl.coalesce(remote.struct.field("v4"), remote.struct.field("v6"), pl.col("remoteIp")),
            duration_s=pl.col("_latency").str.strip_suffix("s"),
            request_id=pl.coalesce("_trace", "_insert_id"),
            waf_action=outcome.replace_strict(OUTCOME_ACTIONS, default=outcome.str.to_lowercase()),
            waf_rule_id=pl.coalesce(expression_ids, pl.col("_priority")),
            waf_message=pl.when(pl.col("_policy_name").is_not_null()).then(
                pl.concat_str(
                    [
                        pl.lit("Cloud Armor policy "),
                        pl.col("_policy_name"),
                        pl.lit(" rule priority "),
                        pl.col("_priority").fill_null("?"),
                        pl.lit(": "),
                        pl.col("_status_details").fill_null(pl.col("_outcome")).fill_null("-"),
                    ]
                )
            ),
            attack_class=classify_attack(expression_ids.fill_null("")),
        )
        events, event_rejects = build_events(
            chunk.objects,
            roles,
            EventSettings(
                timezone=self.options.timezone,
                time_format="auto",
                time_field="timestamp",
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
        )
        events, rejects = finish(events, event_rejects, chunk.rejects)
        return ParseResult.from_frames(events, rejects)
