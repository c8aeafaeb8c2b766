"""The gateway lab: real nginx + ModSecurity + CRS, seeded attacks, gatewatch, Slack stand-in.

One module-scoped run starts the shop API and nginx on 127.0.0.1, sends the
seeded traffic and stops both. gatewatch then reads the logs twice. The
first pass reads the combined access log, plus the ModSecurity audit log
when a ``modsecurity`` connector is registered, and posts to the Slack
stand-in. The second pass reads the ``escape=json`` access log. The tests
compare both passes with the ground truth the generator wrote. Skipped when nginx, the ModSecurity module
or CRS is not installed (`.ci/run` installs them).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import REPO
from rich.console import Console
from slack_standin import SlackStandin

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.gateway import GatewayFiles, GatewayInstall, GatewayMissing, find_install  # noqa: E402
from lab.run import send_traffic  # noqa: E402
from lab.stack import LabStack  # noqa: E402
from lab.traffic import DEFAULT_SEED, expectation, plan_actors  # noqa: E402
from lab.truth import AuditEntry, alert_belongs_to, read_audit_log, score, unowned_alerts  # noqa: E402
from lab.watch import (  # noqa: E402
    SLACK_CHANNEL,
    SLACK_TOKEN_ENV,
    WatchReport,
    audit_connector_available,
    run_gatewatch,
    write_config,
)

pytestmark = pytest.mark.lab

# Upper bound on the traffic pass; it takes about 13 s on a 2-core machine.
TRAFFIC_SECONDS = 90.0
ACCESS_FORMATS = ["combined", "nginx_json"]
ACTORS = plan_actors(DEFAULT_SEED)
# (access format, actor name) per expectation; an actor with `formats` is
# "now" only in those formats and "later" in the others.
EXPECTATIONS = [
    (access_format, actor.name, expectation(actor.ground_truth(), access_format)[0])
    for access_format in ACCESS_FORMATS
    for actor in ACTORS
]
ATTACKERS_NOW = [(access_format, name) for access_format, name, expected in EXPECTATIONS if expected == "now"]
ATTACKERS_LATER = [(access_format, name) for access_format, name, expected in EXPECTATIONS if expected == "later"]
NORMAL_CLIENTS = [actor.name for actor in ACTORS if actor.expected == "never"]


@dataclass
class LabRun:
    run_dir: Path
    truth: dict[str, Any]
    files: GatewayFiles
    stack: LabStack


@pytest.fixture(scope="module")
def install() -> GatewayInstall:
    try:
        return find_install()
    except GatewayMissing as error:
        pytest.skip(f"the lab needs nginx with ModSecurity and CRS: {error}")


@pytest.fixture(scope="module")
def slack():
    with SlackStandin(channels={SLACK_CHANNEL}) as standin:
        yield standin


@pytest.fixture(scope="module")
def lab_run(install, tmp_path_factory) -> LabRun:
    run_dir = tmp_path_factory.mktemp("lab")
    # Leaving the block stops the API and nginx, also when traffic fails.
    with LabStack(run_dir, install) as stack:
        truth = send_traffic(stack, run_dir, DEFAULT_SEED, TRAFFIC_SECONDS)
    assert stack.files is not None
    return LabRun(run_dir, truth, stack.files, stack)


@pytest.fixture(scope="module")
def reports(lab_run, slack) -> dict[str, WatchReport]:
    """Run gatewatch over the lab's logs, once per access log format."""
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SLACK_TOKEN_ENV, slack.token)
        for access_format in ACCESS_FORMATS:
            # Only the combined run posts to Slack, so each alert is posted once.
            base_url = slack.base_url if access_format == "combined" else None
            config = write_config(lab_run.run_dir, base_url, access_format=access_format)
            console = Console(file=io.StringIO(), width=200)
            results[access_format] = run_gatewatch(config, console)
    return results


@pytest.fixture(scope="module")
def audit_entries(lab_run) -> list[AuditEntry]:
    return read_audit_log(lab_run.files.audit_log)


def actor_truth(lab_run: LabRun, name: str) -> dict[str, Any]:
    return next(actor for actor in lab_run.truth["actors"] if actor["name"] == name)


def database(lab_run: LabRun, access_format: str) -> Path:
    return lab_run.run_dir / f"gatewatch-{access_format}.duckdb"


def query(path: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, parameters or []).fetchall()


def test_lab_traffic_plan_is_seeded():
    first = plan_actors(DEFAULT_SEED)
    second = plan_actors(DEFAULT_SEED)
    assert [actor.requests for actor in first] == [actor.requests for actor in second]
    assert [actor.requests for actor in plan_actors(DEFAULT_SEED + 1)] != [actor.requests for actor in first]


ATTRIBUTION_CASES = [
    ({"client_ip": "203.0.113.10"}, True),
    ({"client_ip": "203.0.113.11"}, False),
    ({"network": "203.0.113.0/24"}, True),
    ({"network": "198.18.7.0/24"}, False),
    ({"network": "2001:db8::/48"}, False),
    ({"user_agent": "python-requests/2.31.0"}, True),
    ({"user_agent": "curl/8.5.0"}, False),
    ({"source": "edge"}, False),
]


@pytest.mark.parametrize(("group_key", "belongs"), ATTRIBUTION_CASES)
def test_lab_alert_attribution(group_key, belongs):
    actor = {"addresses": ["203.0.113.10"], "user_agents": ["python-requests/2.31.0"]}
    alert = {"group_key": group_key, "client_ip": group_key.get("client_ip")}
    assert alert_belongs_to(actor, alert) is belongs


def test_lab_traffic_sent_in_full(lab_run):
    assert lab_run.truth["timed_out"] is False
    for actor in lab_run.truth["actors"]:
        assert actor["sent"] == actor["planned"], actor["name"]
        assert "errors" not in actor, actor["name"]


def test_lab_processes_stopped(lab_run):
    names = [name for name, _ in lab_run.stack.started]
    assert names == ["shop API", "nginx"]
    for name, process in lab_run.stack.started:
        assert process.poll() is not None, f"{name} (pid {process.pid}) still runs"


def test_lab_stack_stops_on_error(install, tmp_path):
    with pytest.raises(RuntimeError, match="traffic failed"):
        with LabStack(tmp_path, install) as stack:
            raise RuntimeError("traffic failed")
    assert len(stack.started) == 2
    for name, process in stack.started:
        assert process.poll() is not None, f"{name} (pid {process.pid}) still runs"


def test_lab_stack_stops_api_when_nginx_fails(install, tmp_path):
    broken = dataclasses.replace(install, module=tmp_path / "missing_module.so")
    stack = LabStack(tmp_path, broken)
    with pytest.raises(RuntimeError, match="nginx -t failed"):
        with stack:
            pass
    assert [name for name, _ in stack.started] == ["shop API"]
    for name, process in stack.started:
        assert process.poll() is not None, f"{name} (pid {process.pid}) still runs"


@pytest.mark.parametrize("access_format", ACCESS_FORMATS)
def test_lab_gatewatch_reports_no_errors(reports, access_format):
    assert [str(error) for error in reports[access_format].errors] == []


@pytest.mark.parametrize("access_format", ACCESS_FORMATS)
def test_lab_every_access_line_is_an_event(lab_run, reports, access_format):
    log = lab_run.files.access_log if access_format == "combined" else lab_run.files.json_log
    lines = sum(1 for line in log.read_bytes().splitlines() if line.strip())
    path = database(lab_run, access_format)
    assert query(path, "SELECT count(*) FROM events WHERE source = 'edge'")[0][0] == lines
    assert query(path, "SELECT count(*) FROM rejects")[0][0] == 0
    assert query(path, "SELECT count(*) FROM events WHERE source = 'edge' AND request_id IS NULL")[0][0] == 0


# Columns that both lab log formats carry; the JSON log also has host,
# request length and request time.
SHARED_COLUMNS = [
    "ts", "client_ip", "forwarded_for", "method", "path", "query", "http_version", "status",
    "bytes_sent", "user_agent", "referer", "user", "malformed",
]


@pytest.mark.parametrize("column", SHARED_COLUMNS)
def test_lab_connectors_agree_per_request(lab_run, reports, column):
    """The combined and nginx_json connectors read the same value from both logs of one request."""
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{database(lab_run, 'combined')}' AS combined (READ_ONLY)")
        con.execute(f"ATTACH '{database(lab_run, 'nginx_json')}' AS json_log (READ_ONLY)")
        joined = con.execute(
            "SELECT count(*) FROM combined.events c JOIN json_log.events j USING (request_id) "
            "WHERE c.source = 'edge' AND j.source = 'edge'"
        ).fetchone()[0]
        differing = con.execute(
            f"SELECT request_id, c.{column}, j.{column} FROM combined.events c JOIN json_log.events j "
            f"USING (request_id) WHERE c.source = 'edge' AND j.source = 'edge' AND c.{column} IS DISTINCT FROM j.{column} "
            "LIMIT 3"
        ).fetchall()
    assert joined == sum(1 for line in lab_run.files.access_log.read_bytes().splitlines() if line.strip())
    assert differing == []


@pytest.mark.parametrize(("access_format", "name"), ATTACKERS_NOW)
def test_lab_attacker_alerted(lab_run, reports, access_format, name):
    outcome = next(o for o in score(lab_run.truth, reports[access_format].alerts, access_format) if o.name == name)
    assert outcome.missing == set(), f"{name} ({outcome.kind}) raised only {sorted(outcome.fired)}"
    assert outcome.unexpected == set()


@pytest.mark.parametrize("name", [actor.name for actor in ACTORS if actor.allowed])
def test_lab_allowed_rules_have_reasons(lab_run, name):
    """A rule allowed besides the expected ones names why it may fire, and is not expected too."""
    actor = actor_truth(lab_run, name)
    for rule, reason in actor["allowed"].items():
        assert rule not in actor["rules"], rule
        assert reason.strip(), rule


@pytest.mark.parametrize("access_format", ACCESS_FORMATS)
@pytest.mark.parametrize("name", NORMAL_CLIENTS)
def test_lab_normal_client_quiet(lab_run, reports, access_format, name):
    """A normal client raises no rule, except one the ground truth allows with a reason."""
    outcome = next(o for o in score(lab_run.truth, reports[access_format].alerts, access_format) if o.name == name)
    assert outcome.unexpected == set()
    assert outcome.verdict == "quiet"


@pytest.mark.parametrize("access_format", ACCESS_FORMATS)
def test_lab_no_alert_without_actor(lab_run, reports, access_format):
    assert unowned_alerts(lab_run.truth, reports[access_format].alerts) == []


@pytest.mark.parametrize(("access_format", "name"), ATTACKERS_LATER)
def test_lab_attack_expected_later(lab_run, reports, access_format, name):
    """Attacks the current rule pack cannot catch in this format: reported as xfail until a rule does."""
    actor = actor_truth(lab_run, name)
    assert actor["sent"] > 0
    outcome = next(o for o in score(lab_run.truth, reports[access_format].alerts, access_format) if o.name == name)
    if not outcome.fired:
        reason = actor.get("other_formats") or "the ground truth expects a later rule"
        pytest.xfail(f"{name} ({outcome.kind}) raised no alert over the {access_format} log: {reason}")


# Per rule: the measure that counts requests, and which access log events it
# must equal within the alert's window.
COUNTED_ONCE = {
    "credential-stuffing": ("failures", "path = '/api/v1/auth/token' AND status IN (401, 403)"),
    "credential-stuffing-slow": ("failures", "path = '/api/v1/auth/token' AND status IN (401, 403)"),
    "waf-blocks-repeated": ("blocks", "status = 403"),
}


@pytest.mark.parametrize("rule", sorted(COUNTED_ONCE))
def test_lab_requests_counted_once(lab_run, reports, rule):
    """A request in both the access log and the audit log counts once."""
    if not audit_connector_available():
        pytest.skip("no modsecurity connector is registered; the audit log is not ingested")
    path = database(lab_run, "combined")
    assert query(path, "SELECT count(*) FROM events WHERE source = 'waf'")[0][0] > 0
    measure, condition = COUNTED_ONCE[rule]
    alerts = query(
        path,
        "SELECT group_key->>'client_ip', window_start, window_end, CAST(measures AS VARCHAR) FROM alerts "
        "WHERE rule_id = ?",
        [rule],
    )
    assert alerts
    for client_ip, window_start, window_end, measures in alerts:
        # A window ending at t contains the events with t - window < ts <= t.
        access_events = query(
            path,
            f"SELECT count(*) FROM events WHERE source = 'edge' AND client_ip = ? AND ts > ? AND ts <= ? AND {condition}",
            [client_ip, window_start, window_end],
        )[0][0]
        assert json.loads(measures)[measure] == access_events, client_ip


def crs_blocks_of(actor: dict[str, Any], audit_entries: list[AuditEntry]) -> list[AuditEntry]:
    return [entry for entry in audit_entries if entry.blocked_by_crs and entry.client_ip in actor["addresses"]]


def test_lab_crs_blocks_injection(lab_run, audit_entries):
    blocked = actor_truth(lab_run, "injection-blocked")
    passing = actor_truth(lab_run, "injection-passing")
    assert len(crs_blocks_of(blocked, audit_entries)) == blocked["sent"]
    assert crs_blocks_of(passing, audit_entries) == []


def test_lab_crs_spares_normal_clients(lab_run, audit_entries):
    for name in NORMAL_CLIENTS:
        blocked_uris = [entry.uri for entry in crs_blocks_of(actor_truth(lab_run, name), audit_entries)]
        assert blocked_uris == [], name


@pytest.mark.parametrize("access_format", ACCESS_FORMATS)
def test_lab_waf_blocks_joined_to_requests(lab_run, reports, audit_entries, access_format):
    """Every CRS block (rule 949110) has its request in the access log, found by request id."""
    blocks = [entry for entry in audit_entries if entry.blocked_by_crs]
    assert blocks, "the audit log has no CRS block"
    rows = query(
        database(lab_run, access_format),
        "SELECT request_id, client_ip, status, path FROM events WHERE source = 'edge' AND request_id IN "
        "(SELECT unnest(?))",
        [[entry.unique_id for entry in blocks]],
    )
    joined = {request_id: (client_ip, status, path) for request_id, client_ip, status, path in rows}
    for entry in blocks:
        assert entry.unique_id in joined, f"block {entry.unique_id} of {entry.uri} has no access log event"
        client_ip, status, path = joined[entry.unique_id]
        assert client_ip == entry.client_ip
        assert status == 403
        assert entry.uri.startswith(path)


def test_lab_audit_events_join_access_events(lab_run, reports, audit_entries):
    if not audit_connector_available():
        pytest.skip("no modsecurity connector is registered; the audit log is not ingested")
    blocked_ids = {entry.unique_id for entry in audit_entries if entry.blocked_by_crs}
    rows = query(
        database(lab_run, "combined"),
        "SELECT DISTINCT waf.request_id FROM events waf JOIN events edge USING (request_id) "
        "WHERE waf.source = 'waf' AND edge.source = 'edge'",
    )
    assert blocked_ids <= {row[0] for row in rows}


def posted_alert_ids(slack: SlackStandin) -> list[str]:
    """Return the alert id of each alert message, and the ids each digest message lists."""
    ids = []
    for message in slack.messages:
        payload = (message.get("metadata") or {}).get("event_payload", {})
        if "digest_id" in payload:
            ids.extend(re.findall(r"\b[0-9a-f]{16}\b", json.dumps(message["blocks"])))
        else:
            ids.append(payload.get("alert_id"))
    return ids


def test_lab_alerts_posted_to_slack(reports, slack):
    stored = sorted(alert["alert_id"] for alert in reports["combined"].alerts)
    assert stored
    assert sorted(posted_alert_ids(slack)) == stored
    assert {message["channel"] for message in slack.messages} == {SLACK_CHANNEL}


def authorization_values(audit_log: Path) -> set[str]:
    values = set()
    for line in audit_log.read_text(encoding="utf-8").splitlines():
        headers = json.loads(line)["transaction"]["request"]["headers"]
        values.update(value for name, value in headers.items() if name.lower() == "authorization")
    return values


def json_log_authorization_values(json_log: Path) -> set[str]:
    values = set()
    for line in json_log.read_text(encoding="utf-8").splitlines():
        value = json.loads(line).get("http_authorization", "")
        if value:
            values.add(value)
    return values


def test_lab_credentials_stay_out_of_store(lab_run, reports):
    """The audit log and the JSON access log keep raw Authorization headers; no store may contain one."""
    audit_headers = authorization_values(lab_run.files.audit_log)
    json_headers = json_log_authorization_values(lab_run.files.json_log)
    assert audit_headers, "the audit log holds no Authorization header"
    assert any(header.startswith("Bearer ") for header in json_headers), "the JSON log holds no bearer token"
    # Each whole header, and the credential after its scheme, which is what gets fingerprinted.
    secrets = set()
    for header in audit_headers | json_headers:
        secrets.add(header)
        secrets.add(header.split(" ", 1)[-1])
    for access_format in ACCESS_FORMATS:
        path = database(lab_run, access_format)
        for table in ("events", "alerts"):
            texts = [row[0] for row in query(path, f"SELECT CAST(t AS VARCHAR) FROM {table} t")]
            leaked = [secret for secret in secrets if any(secret in text for text in texts)]
            assert leaked == [], f"{access_format} {table}"


def test_lab_json_pass_fingerprints_tokens(lab_run, reports):
    """The JSON pass gives dana's token one fingerprint, sent from her address and token-replay's."""
    addresses = query(
        database(lab_run, "nginx_json"),
        "SELECT list(DISTINCT client_ip ORDER BY client_ip) FROM events WHERE source = 'edge' "
        "AND path = '/api/v1/users/dana/orders' GROUP BY credential_id",
    )
    senders = [*actor_truth(lab_run, "shopper-dana")["addresses"], *actor_truth(lab_run, "token-replay")["addresses"]]
    expected = sorted(senders)
    assert addresses == [(expected,)]
