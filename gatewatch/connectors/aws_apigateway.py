"""AWS API Gateway access logs in JSON (REST, HTTP and WebSocket APIs).

API Gateway writes whatever JSON template the stage's access-log setting
holds, filled from ``$context`` variables. The keys of the console's JSON
template and the usual additions are read by default; the ``fields``
option maps other keys.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._json import VALUE_ROLES, EventSettings, build_events, finish, json_path, read_json_objects, text_at
from gatewatch.connectors._time import validate_timezone
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# Template key -> role, with the $context variable each key usually holds.
# Where several keys fill one role, the first present one wins.
DEFAULT_FIELDS: dict[str, str] = {
    "requestTimeEpoch": "ts",  # $context.requestTimeEpoch, milliseconds
    "requestTime": "ts",  # $context.requestTime, CLF
    "ip": "client_ip",  # $context.identity.sourceIp
    "sourceIp": "client_ip",
    "httpMethod": "method",  # $context.httpMethod
    "path": "path",  # $context.path
    "protocol": "http_version",  # $context.protocol
    "status": "status",  # $context.status
    "responseLength": "bytes_sent",  # $context.responseLength
    "responseLatency": "duration_ms",  # $context.responseLatency, milliseconds
    "userAgent": "user_agent",  # $context.identity.userAgent
    "requestId": "request_id",  # $context.requestId
    "user": "user",  # $context.identity.user
    "principalId": "user",  # $context.authorizer.principalId
    "domainName": "host",  # $context.domainName
    "apiKey": "api_key",  # $context.identity.apiKey (REST APIs)
    "apiKeyId": "api_key",  # $context.identity.apiKeyId
    "wafResponseCode": "waf_action",  # $context.wafResponseCode: WAF_ALLOW, WAF_BLOCK
    "webaclArn": "waf_rule_id",  # $context.webaclArn
}


class AwsApiGatewayOptions(ConnectorOptions):
    """Options of the aws_apigateway connector."""

    # Template key -> role: a column name (client_ip, status, ...) or one of
    # request, target, duration_s, authorization, api_key. These keys come
    # before the default keys of the same role.
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        for key, role in fields.items():
            json_path([key])
            if role not in VALUE_ROLES:
                raise ValueError(
                    f"fields: key {key!r} maps to unknown column {role!r}; use one of {', '.join(sorted(VALUE_ROLES))}"
                )
        return fields


class AwsApiGatewayConnector(Connector):
    """AWS API Gateway JSON access logs."""

    name = "aws_apigateway"
    aliases = ("apigateway", "aws_api_gateway")
    options_model = AwsApiGatewayOptions
    options: AwsApiGatewayOptions

    def __init__(self, options: ConnectorOptions | None = None, fingerprint_key: bytes = b""):
        super().__init__(options, fingerprint_key)
        # role -> keys, most preferred first
        self._role_keys: dict[str, list[str]] = {}
        for key, role in self.options.fields.items():
            self._role_keys.setdefault(role, []).append(key)
        for key, role in DEFAULT_FIELDS.items():
            if key not in self.options.fields:
                self._role_keys.setdefault(role, []).append(key)

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        keys = [key for role_keys in self._role_keys.values() for key in role_keys]
        values = {f"_key_{index}": text_at(key) for index, key in enumerate(keys)}
        column_of = {key: f"_key_{index}" for index, key in enumerate(keys)}
        chunk = read_json_objects(lines, values, keys)

        roles = {}
        for role, role_keys in self._role_keys.items():
            columns = [null_if_placeholder(pl.col(column_of[key])) for key in role_keys]
            roles[role] = pl.coalesce(columns) if len(columns) > 1 else columns[0]
        if "waf_action" in roles:
            roles["waf_action"] = roles["waf_action"].str.replace(r"(?i)^waf_", "")
        time_keys = " or ".join(self._role_keys.get("ts", [])) or "no key mapped to ts"
        events, event_rejects = build_events(
            chunk.objects,
            roles,
            EventSettings(
                timezone=self.options.timezone,
                time_format="auto",
                time_field=time_keys,
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
        )
        events, rejects = finish(events, event_rejects, chunk.rejects)
        return ParseResult.from_frames(events, rejects)


def null_if_placeholder(value: pl.Expr) -> pl.Expr:
    """Map "-" and "" (what API Gateway writes for a variable without a value) to null."""
    return pl.when((value != "-") & (value != "")).then(value)
