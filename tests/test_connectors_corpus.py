"""Run the combined connector over third-party nginx and Apache logs.

The logs live outside the repository, in ``../shared/corpus`` (real
captures and the test fixtures of other log parsers). The module is skipped
when that directory is absent.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from gatewatch.connectors.combined import CombinedConnector
from linefeed import CORPUS, event_rows, frame_from_file

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus directory {CORPUS} not found"),
]

# Files under nginx/ and apache/ that contain no access-log line at all.
NOT_ACCESS_LOGS = {
    "nginx/crowdsec_hub__nginx_req_limit_exceeded.log": "nginx error log (limit_req)",
    "nginx/fail2ban__nginx-forbidden.log": "nginx error log (access forbidden by rule)",
    "nginx/fail2ban__nginx-http-auth.log": "nginx error log (basic-auth failures)",
    "nginx/fail2ban__nginx-limit-req.log": "nginx error log (limit_req)",
    "apache/fail2ban__apache-auth.log": "Apache error log (auth failures)",
    "apache/fail2ban__apache-botsearch.log": "Apache error log (File does not exist)",
    "apache/fail2ban__apache-nohome.log": "Apache error log (~user probing)",
    "apache/fail2ban__apache-noscript.log": "Apache error log (script not found)",
    "apache/fail2ban__apache-overflows.log": "Apache error log (invalid URI)",
    "apache/fail2ban__apache-shellshock.log": "Apache error log (CGI warnings)",
}

# Rejected lines per access-log file, and why. Every other file has none.
EXPECTED_REJECTS = {
    # error-log lines mixed into access logs
    "nginx/crowdsec_hub__nginx-http-generic-bf.log": 16,
    "nginx/crowdsec_hub__nginx_http-logs.log": 1,
    "apache/crowdsec_hub__apache-cve-2021-41773.log": 1,
    "apache/crowdsec_hub__apache2-logs.log": 2,
    # Nginx Proxy Manager's own log_format ([time] first, "[Client addr]"),
    # not the combined format, plus two error-log lines
    "nginx/crowdsec_hub__nginx-proxy-manager-logs.log": 13,
    "nginx/crowdsec_hub__nginx_http-catch-npm.log": 6,
    # "# failJSON" comment lines, plus six error-log lines in botsearch
    "nginx/fail2ban__nginx-bad-request.log": 8,
    "nginx/fail2ban__nginx-botsearch.log": 21,
    "apache/fail2ban__apache-badbots.log": 4,
    "apache/fail2ban__apache-fakegooglebot.log": 4,
    "apache/fail2ban__apache-pass.log": 1,
    "apache/fail2ban__php-url-fopen.log": 1,
}

REAL_NGINX = "nginx/agungbahtiarr__real_server_access.log"
REAL_APACHE = "apache/elastic_examples_apache_logs.log"


def access_logs() -> list[str]:
    if not CORPUS.is_dir():
        return []
    names = [f"{folder}/{path.name}" for folder in ("nginx", "apache") for path in sorted((CORPUS / folder).iterdir())]
    return [name for name in names if name not in NOT_ACCESS_LOGS]


def parse_file(name: str):
    frame = frame_from_file(CORPUS / name)
    return frame, CombinedConnector().parse(frame)


def row_at_line_with(name: str, text: str) -> dict:
    """Return the event of the first line of ``name`` that contains ``text``."""
    data = (CORPUS / name).read_bytes()
    position = data.index(text.encode())
    offset = data.rfind(b"\n", 0, position) + 1
    _, result = parse_file(name)
    [row] = event_rows(result.events.filter(pl.col("offset") == offset))
    return row


@pytest.mark.parametrize("name", access_logs())
def test_corpus_every_line_accounted(name):
    frame, result = parse_file(name)
    offsets = result.events["offset"].to_list() + result.rejects["offset"].to_list()
    assert sorted(offsets) == frame["offset"].to_list()
    assert len(set(offsets)) == len(offsets)


@pytest.mark.parametrize("name", access_logs())
def test_corpus_reject_count(name):
    _, result = parse_file(name)
    assert result.rejects.height == EXPECTED_REJECTS.get(name, 0), result.rejects.to_dicts()


@pytest.mark.parametrize("name", access_logs())
def test_corpus_rejects_have_reasons(name):
    _, result = parse_file(name)
    assert result.rejects["reason"].null_count() == 0
    assert (result.rejects["reason"].str.len_chars() > 0).all()


@pytest.mark.parametrize("name", [name for name in EXPECTED_REJECTS if "fail2ban" in name])
def test_corpus_fail2ban_comments_rejected(name):
    _, result = parse_file(name)
    comments = result.rejects.filter(pl.col("line").str.starts_with("#"))
    assert comments.height > 0
    assert set(comments["reason"]) == {"comment line"}


def test_corpus_listed_files_exist():
    for name in [*NOT_ACCESS_LOGS, *EXPECTED_REJECTS]:
        assert (CORPUS / name).is_file(), name


def test_corpus_skipped_files_are_error_logs():
    for name in NOT_ACCESS_LOGS:
        _, result = parse_file(name)
        assert result.events.height == 0, name


# A day of a real internet-facing nginx server (+0700).


def test_corpus_real_nginx_counts():
    _, result = parse_file(REAL_NGINX)
    assert result.events.height == 1791
    assert result.rejects.height == 0
    assert result.events["malformed"].sum() == 22
    assert result.events["ts"].min() == datetime(2024, 12, 9, 17, 0, 2)
    assert result.events["ts"].max() == datetime(2024, 12, 10, 11, 18, 33)


def test_corpus_real_nginx_first_line():
    _, result = parse_file(REAL_NGINX)
    row = event_rows(result.events.head(1))[0]
    assert row["ts"] == datetime(2024, 12, 9, 17, 0, 2)
    assert row["client_ip"] == "128.199.220.236"
    assert row["method"] == "GET"
    assert row["path"] == "/hhh.php"
    assert row["status"] == 404
    assert row["bytes_sent"] == 187
    assert row["user_agent"] == (
        "Mozlila/5.0 (Linux; Android 7.0; SM-G892A Bulid/NRD90M; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Version/4.0 Chrome/60.0.3112.107 Moblie Safari/537.36Team Anon Force"
    )


def test_corpus_real_nginx_tls_handshake():
    row = row_at_line_with(REAL_NGINX, '179.43.163.250 - - [10/Dec/2024:00:12:36 +0700] "\\x16')
    assert row["ts"] == datetime(2024, 12, 9, 17, 12, 36)
    assert row["client_ip"] == "179.43.163.250"
    assert row["malformed"] is True
    assert row["method"] is None
    assert row["status"] == 400
    assert row["bytes_sent"] == 157
    assert row["user_agent"] is None
    assert row["extra"]["request_raw"].startswith("\\x16\\x03\\x01\\x00\\xEE")


def test_corpus_real_nginx_pearcmd_probe():
    row = row_at_line_with(REAL_NGINX, "pearcmd&+config-create+/&/<?echo(md5(")
    assert row["ts"] == datetime(2024, 12, 10, 10, 18, 32)
    assert row["client_ip"] == "47.254.251.235"
    assert row["method"] == "GET"
    assert row["path"] == "/index.php"
    assert row["query"] == 'lang=../../../../../../../../usr/local/lib/php/pearcmd&+config-create+/&/<?echo(md5("hi"));?>+/tmp/index1.php'
    assert row["status"] == 404
    assert row["user_agent"] == "Custom-AsyncHttpClient"


def test_corpus_real_nginx_thinkphp_backslash():
    row = row_at_line_with(REAL_NGINX, "GET /index.php?s=/index/\\x5Cthink")
    assert row["query"].startswith("s=/index/\\think\\app/invokefunction&")


def test_corpus_real_nginx_connect_probe():
    row = row_at_line_with(REAL_NGINX, '"CONNECT 45.61.136.175:7227 ')
    assert row["client_ip"] == "94.156.167.81"
    assert row["method"] == "CONNECT"
    assert row["host"] == "45.61.136.175"
    assert row["path"] is None


# Real Apache traffic (semicomplete.com, May 2015, +0000).


def test_corpus_real_apache_counts():
    _, result = parse_file(REAL_APACHE)
    assert result.events.height == 10000
    assert result.rejects.height == 0
    assert result.events["malformed"].sum() == 0
    assert result.events["client_ip"].n_unique() == 1753
    assert result.events["ts"].min() == datetime(2015, 5, 17, 10, 5, 0)
    assert result.events["ts"].max() == datetime(2015, 5, 20, 21, 5, 59)


def test_corpus_real_apache_first_line():
    _, result = parse_file(REAL_APACHE)
    row = event_rows(result.events.head(1))[0]
    assert row["ts"] == datetime(2015, 5, 17, 10, 5, 3)
    assert row["client_ip"] == "83.149.9.216"
    assert row["method"] == "GET"
    assert row["path"] == "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    assert row["query"] is None
    assert row["status"] == 200
    assert row["bytes_sent"] == 203023
    assert row["referer"] == "http://semicomplete.com/presentations/logstash-monitorama-2013/"
    assert row["user_agent"] == (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/32.0.1700.77 Safari/537.36"
    )


def test_corpus_real_apache_feed_query():
    row = row_at_line_with(REAL_APACHE, '50.16.19.13 - - [17/May/2015:10:05:10 +0000] "GET /blog/tags/puppet?flav=rss20')
    assert row["ts"] == datetime(2015, 5, 17, 10, 5, 10)
    assert row["path"] == "/blog/tags/puppet"
    assert row["query"] == "flav=rss20"
    assert row["status"] == 200
    assert row["bytes_sent"] == 14872
    assert row["user_agent"] == "Tiny Tiny RSS/1.11 (http://tt-rss.org/)"


def test_corpus_real_apache_invalid_utf8_referer():
    row = row_at_line_with(REAL_APACHE, "201.242.142.135 - - [19/May/2015:11:05:10 +0000]")
    assert row["client_ip"] == "201.242.142.135"
    assert row["referer"] == "http://\\xe4\\xe5\\xe3\\xf2\\xff\\xf0\\xed\\xee\\xe5-\\xec\\xfb\\xeb\\xee.\\xf0\\xf4/"
    assert row["user_agent"] == "Mozilla/5.0 (Windows NT 6.1; rv:11.0) Gecko/20100101 Firefox/11.0"


def test_corpus_real_apache_truncated_user_agent():
    row = row_at_line_with(REAL_APACHE, "46.118.127.106 - - [20/May/2015:12:05:17 +0000]")
    assert row["path"] == "/scripts/grok-py-test/configlib.py"
    assert row["user_agent"] == "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"
    assert row["extra"] == {"truncated": True}


# Fixtures from other parsers' test suites.


def test_corpus_beats_forwarded_lists():
    _, result = parse_file("nginx/elastic_beats__nginx_access_test.log")
    rows = event_rows(result.events)
    assert [row["client_ip"] for row in rows] == [
        "10.0.0.2",
        "172.17.0.1",
        "10.0.0.2",
        "85.181.35.98",
        "10.5.102.222",
        "2a03:0000:10ff:f00f:0000:0000:0:8000",
        "127.0.0.1",
    ]
    assert rows[5]["forwarded_for"] == "2a03:0000:10ff:f00f:0000:0000:0:8000, 10.225.192.17"
    assert rows[5]["extra"]["peer_ip"] == "10.2.2.121"
    assert rows[6]["malformed"] is True


def test_corpus_invalid_http_versions_kept():
    _, result = parse_file("nginx/crowdsec_hub__http-dos-invalid-http-versions.log")
    assert result.events["http_version"].to_list() == ["HTTP/1.0", "HTTP/1.1", "HTTP/1.2", "HTTP/0.9", "HTTP/2.0", "HTTP/2.1"]
    assert result.events["malformed"].sum() == 0


def test_corpus_binary_requests_are_events():
    _, result = parse_file("nginx/crowdsec_hub__nginx-http-malformed.log")
    assert result.rejects.height == 0
    assert result.events["malformed"].all()
    assert result.events["client_ip"].unique().to_list() == ["1.2.3.4"]


def test_corpus_syslog_prefixed_lines():
    _, result = parse_file("nginx/crowdsec_hub__http-bf-wordpress-bf.log")
    assert result.events.height == 9
    assert result.events["client_ip"].unique().to_list() == ["81.150.104.130"]
    assert result.events["path"].unique().to_list() == ["/wp-login.php"]


def test_corpus_dirbuster_ipv6_loopback():
    _, result = parse_file("apache/kit0415__dirbuster_lab_access.log")
    assert result.rejects.height == 0
    assert result.events["client_ip"][0] == "::1"
    assert result.events["ts"][0] == datetime(2019, 9, 24, 2, 49, 6)
    assert result.events.filter(pl.col("status") == 404).height == 5078

