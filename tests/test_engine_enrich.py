"""Enrichment from a network CSV: ip_country(), ip_asn() and ip_organization() in rules."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from helpers import at, insert_events, write_rule

from gatewatch.engine.evaluator import EvaluationSettings, evaluate_rule
from gatewatch.engine.loader import load_rules
from gatewatch.errors import RuleError

NETWORKS = """\
network,asn,organization,country
192.0.2.0/24,64500,Example Hosting,DE
192.0.2.128/25,64501,Example Cloud,NL
2001:db8::/32,64502,Example IPv6 Carrier,BR
"""

LISTS = "networks: [networks.csv]\n"

RULE = """\
id: countries
title: Countries per user
severity: low
type: aggregate
group_by: ["user"]
window: 10m
every: 1m
having: countries >= 3
measures:
  countries: count(distinct ip_country(client_ip))
  networks: count(distinct ip_organization(client_ip))
summary: "{user} from {countries} countries"
"""

SETTINGS = EvaluationSettings(lateness=timedelta(0), catch_up_after=None)


def load(tmp_path, rule=RULE, networks=NETWORKS):
    write_rule(tmp_path, "lists.yaml", LISTS)
    write_rule(tmp_path, "networks.csv", networks)
    write_rule(tmp_path, "rule.yaml", rule)
    return load_rules([tmp_path])


def event(ts: str, ip: str, user: str) -> dict:
    return {"ts": at(ts), "client_ip": ip, "user": user, "path": "/", "status": 200}


def test_enrich_country_measure(store, tmp_path):
    rule_set = load(tmp_path)
    assert [str(e) for e in rule_set.errors] == []
    rows = [
        event("10:00:01", "192.0.2.10", "alice"),
        event("10:00:02", "192.0.2.200", "alice"),
        event("10:00:03", "2001:db8::7", "alice"),
        event("10:00:04", "192.0.2.10", "bob"),
        event("10:00:05", "192.0.2.11", "bob"),
        event("10:00:06", "198.51.100.1", "bob"),
    ]
    insert_events(store, rows)
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:20:00"))
    found = store.con.execute("SELECT group_key::VARCHAR, measures::VARCHAR FROM alerts").fetchall()
    assert [json.loads(g) for g, _ in found] == [{"user": "alice"}]
    assert json.loads(found[0][1])["networks"] == 3


def test_enrich_most_specific_range(store, tmp_path):
    rule = RULE.replace("having: countries >= 3", "where: ip_country(client_ip) = 'NL' and ip_asn(client_ip) = 64501\nhaving: count(*) >= 1")
    rule_set = load(tmp_path, rule)
    assert [str(e) for e in rule_set.errors] == []
    insert_events(store, [event("10:00:01", "192.0.2.10", "alice"), event("10:00:02", "192.0.2.200", "bob")])
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:20:00"))
    groups = [r[0] for r in store.con.execute("SELECT group_key->>'user' FROM alerts").fetchall()]
    assert groups == ["bob"]


def test_enrich_reloads_changed_file(store, tmp_path):
    rule_set = load(tmp_path)
    rule = rule_set.rules[0]
    evaluate_rule(store, rule, [], SETTINGS, until=at("09:00:00"))
    assert store.con.execute("SELECT count(*) FROM networks").fetchone() == (3,)
    (tmp_path / "networks.csv").write_text(NETWORKS + "198.51.100.0/24,64503,Example Transit,FR\n")
    os.utime(tmp_path / "networks.csv", (1_900_000_000, 1_900_000_000))
    evaluate_rule(store, rule, [], SETTINGS, until=at("09:00:00"))
    assert store.con.execute("SELECT count(*) FROM networks").fetchone() == (4,)


def test_enrich_invalid_row_has_line(store, tmp_path):
    rule_set = load(tmp_path, networks=NETWORKS + "192.0.2.0/33,1,x,DE\n")
    with pytest.raises(RuleError) as raised:
        evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("09:00:00"))
    assert "networks.csv:5: invalid row" in str(raised.value)


def test_enrich_missing_file_reported(tmp_path):
    write_rule(tmp_path, "lists.yaml", "networks: [nowhere.csv]\n")
    rule_set = load_rules([tmp_path])
    assert "network file 'nowhere.csv' not found" in str(rule_set.errors[0])
    assert "lists.yaml:1:" in str(rule_set.errors[0])


def test_enrich_reads_maxmind_database(store, tmp_path):
    mmdb_writer = pytest.importorskip("mmdb_writer")
    pytest.importorskip("maxminddb")
    from netaddr import IPSet

    # IPv4 ranges live under ::/96, as in the GeoLite2 files.
    writer = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN-and-Country")
    writer.insert_network(
        IPSet(["192.0.2.0/25"]),
        {"country": {"iso_code": "DE"}, "autonomous_system_number": 64500, "autonomous_system_organization": "Example Hosting"},
    )
    writer.insert_network(
        IPSet(["192.0.2.128/25"]),
        {"registered_country": {"iso_code": "NL"}, "autonomous_system_number": 64501, "autonomous_system_organization": "Example Cloud"},
    )
    writer.to_db_file(str(tmp_path / "networks.mmdb"))
    rule = RULE.replace("having: countries >= 3", "where: ip_country(client_ip) = 'NL' and ip_asn(client_ip) = 64501\nhaving: count(*) >= 1")
    write_rule(tmp_path, "lists.yaml", "networks: [networks.mmdb]\n")
    write_rule(tmp_path, "rule.yaml", rule)
    rule_set = load_rules([tmp_path])
    assert [str(e) for e in rule_set.errors] == []
    insert_events(store, [event("10:00:01", "192.0.2.10", "alice"), event("10:00:02", "192.0.2.200", "bob")])
    evaluate_rule(store, rule_set.rules[0], [], SETTINGS, until=at("10:20:00"))
    groups = [r[0] for r in store.con.execute("SELECT group_key->>'user' FROM alerts").fetchall()]
    assert groups == ["bob"]
    organizations = store.con.execute("SELECT organization FROM networks ORDER BY low").fetchall()
    assert [row[0] for row in organizations] == ["Example Hosting", "Example Cloud"]
