#!/usr/bin/env python3
"""Generate seeded web-shop API traffic with labelled attackers, for benchmarks.

The traffic is one shop's nginx access log: browsers, a mobile app,
integrations, crawlers and load-balancer health checks, plus attackers of
each kind the built-in rules cover and benign clients placed just below
their thresholds. The same events are written in three formats:

- ``access.log``: nginx ``combined``
- ``access.json.log``: nginx JSON with ``escape=json`` and the keys
  time_iso8601, remote_addr, request, status, body_bytes_sent, http_referer,
  http_user_agent, remote_user and request_time
- ``access.vhost.log``: Apache ``vhost_combined``, the combined line behind
  ``%v:%p`` (``shop.example.com:443``), read by the same connector through
  its general head pattern
- ``append.log``, ``append.json.log`` and ``append.vhost.log``: benign lines that continue the
  timeline after the last line, for timing an incremental tick
- ``truth.json``: each attacker's client_ip, kind, expected rule and time
  span, and the near misses that must stay quiet

Timestamps cover ``lines / lines_per_day`` days (default: one day per
million lines, at least twelve hours) with a daily rhythm, quiet at night.
The output depends only on the seed and the arguments: benign traffic is
drawn with numpy from one seeded generator, and each attacker and near miss
from its own ``random.Random`` seeded with its kind and number.

Address plan: attackers use 198.18.0.0/15 (reserved for benchmarks) and
2001:db8:bad::/48. Benign clients use 100.64.0.0/10, 192.0.2.0/24,
198.51.100.0/24, 10.0.0.0/8 and other parts of 2001:db8::/32.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import polars as pl

DEFAULT_SEED = 20261102
DEFAULT_LINES_PER_DAY = 1_000_000
START = datetime(2026, 11, 2, tzinfo=timezone.utc)
MIN_SPAN_SECONDS = 12 * 3600
SITE = "https://shop.example.com"
FORMATS = ("combined", "nginx_json", "apache_vhost")
FILE_NAMES = {"combined": "access.log", "nginx_json": "access.json.log", "apache_vhost": "access.vhost.log"}
APPEND_NAMES = {"combined": "append.log", "nginx_json": "append.json.log", "apache_vhost": "append.vhost.log"}
# The gatewatch connector that reads each format.
CONNECTORS = {"combined": "combined", "nginx_json": "nginx_json", "apache_vhost": "combined"}
VHOST = "shop.example.com:443"
TRUTH_NAME = "truth.json"
# Bump when the output for the same arguments changes, so that cached data
# sets written by an older generator are rebuilt.
GENERATOR_VERSION = 1

# Attackers and near misses of each kind per million lines (at least one).
ATTACKERS_PER_MILLION = 3
NEAR_MISSES_PER_MILLION = 2
PRODUCT_COUNT = 20_000
# Rows formatted and written per block; bounds the memory of the strings.
WRITE_BLOCK_ROWS = 1_000_000

# Relative request rate for each hour of the day (UTC), lowest at 04:00.
HOURLY_RATE = np.array(
    [0.45, 0.35, 0.28, 0.24, 0.22, 0.25, 0.35, 0.55, 0.80, 0.95, 1.00, 1.00,
     1.05, 1.05, 1.00, 0.95, 0.95, 1.00, 1.10, 1.25, 1.35, 1.30, 1.05, 0.70]
)


# ---------------------------------------------------------------- templates

@dataclass(frozen=True)
class Endpoint:
    """A request template: ``method prefix + text + middle + number + suffix``.

    ``text`` names the string table the text comes from ("" for none) and
    ``number`` the kind of number ("" for none). A request gets
    ``ok_status`` unless it draws one of the (status, probability) pairs in
    ``errors``.
    """

    name: str
    method: str
    prefix: str
    text: str = ""
    middle: str = ""
    number: str = ""
    suffix: str = ""
    ok_status: int = 200
    median_bytes: int = 2000
    errors: tuple[tuple[int, float], ...] = ()


ENDPOINTS = [
    Endpoint("home", "GET", "/", median_bytes=31000),
    Endpoint("category_page", "GET", "/c/", text="category", median_bytes=42000),
    Endpoint("product_page", "GET", "/p/", text="slug", middle="-", number="product", median_bytes=38000,
             errors=((404, 0.01),)),
    Endpoint("search_page", "GET", "/search?q=", text="search", median_bytes=27000),
    Endpoint("cart_page", "GET", "/cart", median_bytes=15000),
    Endpoint("orders_page", "GET", "/account/orders", median_bytes=12000, errors=((302, 0.2),)),
    Endpoint("login_page", "GET", "/login", median_bytes=7000),
    Endpoint("login_form", "POST", "/login", ok_status=302, median_bytes=0, errors=((200, 0.05),)),
    Endpoint("css", "GET", "/static/css/main.4b1e09.css", median_bytes=48000, errors=((304, 0.35),)),
    Endpoint("vendor_js", "GET", "/static/js/vendor.d3a771.js", median_bytes=390000, errors=((304, 0.35),)),
    Endpoint("app_js", "GET", "/static/js/app.5c20fe.js", median_bytes=160000, errors=((304, 0.35),)),
    Endpoint("image", "GET", "/img/p/", number="product", suffix=".webp", median_bytes=24000,
             errors=((304, 0.3), (404, 0.005))),
    Endpoint("favicon", "GET", "/favicon.ico", median_bytes=4286, errors=((304, 0.5),)),
    Endpoint("api_product", "GET", "/api/v1/products/", number="product", median_bytes=3500,
             errors=((404, 0.02),)),
    Endpoint("api_search", "GET", "/api/v1/search?q=", text="search", median_bytes=5200),
    Endpoint("api_cart", "GET", "/api/v1/cart", median_bytes=1800),
    Endpoint("api_cart_add", "POST", "/api/v1/cart/items", ok_status=201, median_bytes=900,
             errors=((409, 0.02),)),
    Endpoint("api_recommendations", "GET", "/api/v1/products/", number="product", suffix="/recommendations",
             median_bytes=6100),
    Endpoint("api_reviews", "GET", "/api/v1/products/", number="product", suffix="/reviews?page=1",
             median_bytes=8300),
    Endpoint("api_home", "GET", "/api/v1/home", median_bytes=11200),
    Endpoint("api_categories", "GET", "/api/v1/categories", median_bytes=4100),
    Endpoint("api_account", "GET", "/api/v1/account", median_bytes=1300, errors=((401, 0.01),)),
    Endpoint("api_orders", "GET", "/api/v1/orders?page=", number="page", median_bytes=14000),
    Endpoint("api_order", "GET", "/api/v1/orders/", number="order", median_bytes=2600, errors=((404, 0.01),)),
    Endpoint("api_login", "POST", "/api/v1/auth/token", median_bytes=430, errors=((401, 0.04),)),
    Endpoint("api_paid_orders", "GET", "/api/v1/orders?status=paid&page=", number="page", median_bytes=26000),
    Endpoint("api_inventory", "PUT", "/api/v1/inventory/", number="product", ok_status=204, median_bytes=0),
    Endpoint("api_product_list", "GET", "/api/v1/products?page=", number="page", median_bytes=52000),
    Endpoint("robots", "GET", "/robots.txt", median_bytes=310),
    Endpoint("sitemap", "GET", "/sitemap.xml", median_bytes=81000),
    Endpoint("health", "GET", "/healthz", median_bytes=2),
    # Literal targets from the string table, for attackers and near misses.
    Endpoint("literal_get", "GET", "", text="literal"),
    Endpoint("literal_post", "POST", "", text="literal"),
    Endpoint("literal_put", "PUT", "", text="literal"),
    Endpoint("literal_head", "HEAD", "", text="literal"),
]
ENDPOINT_INDEX = {endpoint.name: index for index, endpoint in enumerate(ENDPOINTS)}
LITERAL_ENDPOINTS = {"GET": "literal_get", "POST": "literal_post", "PUT": "literal_put", "HEAD": "literal_head"}


@dataclass(frozen=True)
class ClientClass:
    """Behaviour of one kind of benign client.

    ``share`` is its fraction of the benign session lines, ``lines_per_client``
    sets how many distinct clients share them, and a session has
    ``mean_session`` requests. Within a session, a fraction ``burst`` of the
    gaps are under half a second (a page's assets) and the rest are
    exponential with mean ``mean_gap`` seconds.
    """

    name: str
    share: float
    lines_per_client: int
    mean_session: float
    mean_gap: float
    burst: float
    endpoints: dict[str, float]


CLIENT_CLASSES = [
    ClientClass("browser", 0.58, 60, 22, 25.0, 0.55, {
        "home": 6, "category_page": 8, "product_page": 12, "search_page": 5, "cart_page": 2,
        "orders_page": 1, "login_page": 1, "login_form": 0.6, "css": 6, "vendor_js": 6, "app_js": 6,
        "image": 22, "favicon": 2, "api_product": 5, "api_search": 5, "api_cart": 3, "api_cart_add": 1,
        "api_recommendations": 4, "api_reviews": 2,
    }),
    ClientClass("app", 0.28, 150, 14, 8.0, 0.2, {
        "api_home": 10, "api_product": 18, "api_search": 10, "api_cart": 6, "api_cart_add": 3,
        "api_recommendations": 8, "api_reviews": 5, "api_categories": 4, "api_account": 3,
        "api_orders": 2, "api_order": 2, "api_login": 1.5, "image": 20,
    }),
    ClientClass("integration", 0.06, 5000, 40, 1.5, 0.0, {
        "api_login": 0.5, "api_paid_orders": 30, "api_order": 25, "api_inventory": 30, "api_product_list": 15,
    }),
    ClientClass("crawler", 0.08, 3000, 30, 20.0, 0.0, {
        "product_page": 60, "category_page": 20, "home": 3, "robots": 1, "sitemap": 1, "image": 15,
    }),
]

BROWSER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
]
APP_AGENTS = [
    "ShopApp/6.2.0 (com.example.shop; build:6200; iOS 18.1.0) Alamofire/5.9.1",
    "ShopApp/6.2.0 (com.example.shop; build:6200; iOS 17.7.1) Alamofire/5.9.1",
    "ShopApp/6.1.3 (com.example.shop; build:6130; iOS 18.0.1) Alamofire/5.9.1",
    "ShopApp/6.2.0 (Android 14; Pixel 7; build:6200) okhttp/4.12.0",
    "ShopApp/6.2.0 (Android 15; SM-S921B; build:6200) okhttp/4.12.0",
    "ShopApp/6.1.3 (Android 13; moto g54; build:6130) okhttp/4.12.0",
]
INTEGRATION_AGENTS = [
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "Apache-HttpClient/5.3.1 (Java/21.0.4)",
    "ErpConnector/3.4 (+https://erp.example.net)",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
]
CRAWLER_AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
]
ATTACK_AGENTS = [
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "okhttp/4.9.3",
    "Wget/1.21.4",
]

CATEGORIES = [
    "shoes", "boots", "sneakers", "jackets", "knitwear", "jeans", "dresses", "bags", "hats", "scarves",
    "home", "kitchen", "bedding", "cushions", "lighting", "garden", "toys", "books", "outdoor", "sale",
]
# Search terms as browsers encode them. Several look like payloads to a naive
# matcher (an apostrophe, "union", "<3", "%" and "select"); no built-in rule
# should fire on them.
SEARCH_TERMS = [
    "boots", "winter+jacket", "running+shoes", "wool+scarf", "men%27s+boots", "women%27s+parka",
    "union+jack+cushion", "i+%3C3+ny+mug", "50%25+off", "select+fit+jeans", "drop+earrings",
    "k%C3%A4se+board", "caf%C3%A9+table", "gift+for+dad", "kids%27+rain+boots", "black+friday",
    "order+status", "1%2F2+price", "table+lamp", "bed+linen+200x220", "sleep+mask", "script+mug",
    "or+and+more", "rock+%26+roll+tee", "x-mas+sweater", "back+pack", "o%27neill+hoodie",
]
SLUG_WORDS = [
    "classic", "leather", "chelsea", "boot", "merino", "crew", "sweater", "linen", "shirt", "canvas",
    "tote", "bag", "down", "parka", "trail", "runner", "oak", "side", "table", "ceramic", "mug",
    "wool", "scarf", "denim", "jacket", "cotton", "tee", "rain", "hat", "desk", "lamp",
]
FIRST_NAMES = [
    "anna", "ben", "clara", "david", "elena", "felix", "greta", "hugo", "ines", "jonas", "kate", "liam",
    "maria", "noah", "olga", "paul", "quinn", "rosa", "sam", "tara", "uma", "vera", "will", "xenia",
    "yusuf", "zoe", "marco", "lena", "omar", "julia",
]
LAST_NAMES = [
    "berg", "rossi", "novak", "silva", "meyer", "jensen", "garcia", "dubois", "kowalski", "smith",
    "nakamura", "costa", "larsen", "moreau", "fischer", "santos", "kim", "popescu", "horvat", "walsh",
]
MAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]
REFERERS = [
    "",  # no referer: "-" in combined, "" in JSON
    f"{SITE}/",
    "https://www.google.com/",
    f"{SITE}/c/sale",
    f"{SITE}/cart",
    "https://www.bing.com/",
]

SENSITIVE_PATHS = [
    "/.env", "/.env.local", "/.env.production", "/api/.env", "/app/.env", "/.git/config", "/.git/HEAD",
    "/.svn/entries", "/.hg/hgrc", "/.aws/credentials", "/.ssh/id_rsa", "/id_rsa", "/.htpasswd", "/.npmrc",
    "/.DS_Store", "/wp-login.php", "/wp-admin/", "/wp-config.php.bak", "/xmlrpc.php", "/phpmyadmin/",
    "/pma/", "/adminer.php", "/phpinfo.php", "/info.php", "/backup.zip", "/backup.sql", "/db.sql",
    "/database.sql.gz", "/dump.sql", "/site.tar.gz", "/www.zip", "/config.php", "/web.config",
    "/docker-compose.yml", "/secrets.json", "/appsettings.json", "/server-status", "/actuator/env",
    "/actuator/health", "/debug/pprof/", "/cgi-bin/", "/manager/html", "/index.php.bak", "/config.php.old",
]
# Payloads written as an attacker types them; each request encodes one
# minimally, fully or twice (see _encode_payload).
INJECTION_PAYLOADS = [
    ("/api/v1/products", "sort", "price' OR '1'='1"),
    ("/api/v1/search", "q", "shoes' UNION SELECT email,password_hash FROM users-- -"),
    ("/api/v1/orders", "id", "1 AND SLEEP(5)"),
    ("/api/v1/search", "q", "1';DROP TABLE orders;-- "),
    ("/api/v1/search", "q", "<script>alert(document.cookie)</script>"),
    ("/api/v1/search", "q", "<img src=x onerror=alert(1)>"),
    ("/api/v1/files", "name", "../../../../etc/passwd"),
    ("/api/v1/products", "category", "1 or 1=1"),
    ("/api/v1/redirect", "url", "javascript:alert(1)"),
    ("/api/v1/export", "file", "php://filter/convert.base64-encode/resource=index.php"),
    ("/api/v1/search", "q", "x' AND extractvalue(1,concat(0x7e,version()))-- "),
    ("/api/v1/products", "id", "1; WAITFOR DELAY '0:0:5'--"),
    ("/api/v1/search", "q", "<svg onload=alert(1)>"),
    ("/api/v1/reports", "path", "..\\..\\windows\\win.ini"),
    ("/api/v1/search", "q", "' or ''='"),
]
BLOCKED_REQUESTS = [
    ("POST", "/api/v1/checkout"),
    ("PUT", "/api/v1/account/address"),
    ("POST", "/api/v1/cart/items"),
    ("POST", "/api/v1/reviews"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/account/password"),
]
FLOOD_TARGETS = ["/", "/api/v1/home", "/api/v1/search?q=boots", "/api/v1/cart", "/search?q=sale"]


# ------------------------------------------------------------------ tables

@dataclass
class StringTable:
    """Strings stored once and referred to by index."""

    values: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, value: str) -> int:
        found = self.index.get(value)
        if found is None:
            found = len(self.values)
            self.values.append(value)
            self.index[value] = found
        return found

    def extend(self, values: list[str]) -> tuple[int, int]:
        """Add ``values`` in order and return (first index, count)."""
        first = len(self.values)
        for offset, value in enumerate(values):
            self.values.append(value)
            self.index.setdefault(value, first + offset)
        return first, len(values)


@dataclass
class Clients:
    """One row per client: address, user agent and HTTP version."""

    ip: list[str] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    protocol: list[str] = field(default_factory=list)

    def add(self, ip: str, agent: str, protocol: str = "HTTP/1.1") -> int:
        self.ip.append(ip)
        self.agent.append(agent)
        self.protocol.append(protocol)
        return len(self.ip) - 1


@dataclass
class Tables:
    clients: Clients
    texts: StringTable
    users: StringTable
    # Per benign client class: the range of client indexes, their sampling
    # weights and, for app clients, each client's account index.
    class_clients: dict[str, np.ndarray]
    class_weights: dict[str, np.ndarray]
    app_accounts: np.ndarray
    text_ranges: dict[str, tuple[int, int]]


ROW_SCHEMA = {
    "t": pl.Float64,  # seconds since START
    "client": pl.Int32,
    "endpoint": pl.Int16,
    "text": pl.Int32,  # index into Tables.texts; 0 is ""
    "number": pl.Int64,  # -1 when the endpoint has no number
    "status": pl.Int16,
    "size": pl.Int32,
    "user": pl.Int32,  # index into Tables.users; -1 when absent
    "referer": pl.Int8,  # index into REFERERS
    "duration_ms": pl.Int32,
}


def span_seconds(lines: int, lines_per_day: int) -> float:
    return max(MIN_SPAN_SECONDS, lines / lines_per_day * 86_400)


def actor_count(lines: int, per_million: int) -> int:
    return max(1, round(lines / 1_000_000 * per_million))


def build_tables(lines: int, seed: int) -> Tables:
    """Build the client pool and string tables; depends only on ``lines`` and ``seed``."""
    rng = np.random.default_rng([seed, 1])
    clients = Clients()

    texts = StringTable()
    texts.add("")
    text_ranges = {
        "category": texts.extend(CATEGORIES),
        "search": texts.extend(SEARCH_TERMS),
        "slug": texts.extend(_product_slugs(rng)),
    }
    users = StringTable()

    class_clients: dict[str, np.ndarray] = {}
    class_weights: dict[str, np.ndarray] = {}
    counts = {c.name: max(20, int(lines * c.share / c.lines_per_client)) for c in CLIENT_CLASSES}
    # Browsers and app users share carrier and home-broadband addresses.
    mobile_count = counts["browser"] + counts["app"]
    v4 = rng.choice(1 << 22, size=mobile_count, replace=False) + (100 << 24 | 64 << 16)
    for class_ in CLIENT_CLASSES:
        count = counts[class_.name]
        first = len(clients.ip)
        if class_.name == "browser":
            ips = _browser_addresses(rng, v4[:count])
            agents = rng.integers(0, len(BROWSER_AGENTS), count)
            for ip, agent in zip(ips, agents):
                clients.add(ip, BROWSER_AGENTS[agent], "HTTP/2.0")
        elif class_.name == "app":
            agents = rng.integers(0, len(APP_AGENTS), count)
            for address, agent in zip(v4[counts["browser"]:], agents):
                clients.add(_ipv4(int(address)), APP_AGENTS[agent], "HTTP/2.0")
        elif class_.name == "integration":
            for i in range(count):
                clients.add(_numbered_address("192.0.2", "2001:db8:1:1::", i, 1, 99), INTEGRATION_AGENTS[i % len(INTEGRATION_AGENTS)])
        else:
            for i in range(count):
                clients.add(_numbered_address("198.51.100", "2001:db8:c::", i, 1, 99), CRAWLER_AGENTS[i % len(CRAWLER_AGENTS)])
        class_clients[class_.name] = np.arange(first, first + count, dtype=np.int32)
        weights = rng.lognormal(0.0, 0.8, count)
        class_weights[class_.name] = weights / weights.sum()

    app_accounts = np.array([users.add(name) for name in _account_names(rng, counts["app"])], dtype=np.int32)
    return Tables(clients, texts, users, class_clients, class_weights, app_accounts, text_ranges)


def _ipv4(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _numbered_address(v4_prefix: str, v6_prefix: str, i: int, first: int, last: int) -> str:
    """Return the i-th address: ``v4_prefix.first`` up to ``.last``, then IPv6."""
    if first + i <= last:
        return f"{v4_prefix}.{first + i}"
    return _canonical(f"{v6_prefix}{i:x}")


def _canonical(address: str) -> str:
    """Write an address as nginx logs it (IPv6 compressed, lower case)."""
    return str(ipaddress.ip_address(address))


def _browser_addresses(rng: np.random.Generator, v4: np.ndarray) -> list[str]:
    """Return one address per browser: a fifth IPv6 in 2001:db8::/32, the rest IPv4."""
    is_v6 = rng.random(len(v4)) < 0.2
    groups = rng.integers(0x1000, 0xFFFF, size=(len(v4), 3))
    return [
        f"2001:db8:{g[0]:x}:{g[1]:x}::{g[2]:x}" if v6 else _ipv4(int(address))
        for address, v6, g in zip(v4, is_v6, groups)
    ]


def _product_slugs(rng: np.random.Generator) -> list[str]:
    words = np.array(SLUG_WORDS)
    picks = rng.integers(0, len(words), size=(PRODUCT_COUNT, 3))
    return ["-".join(words[row]) for row in picks]


def _account_names(rng: np.random.Generator, count: int) -> list[str]:
    first = rng.integers(0, len(FIRST_NAMES), count)
    last = rng.integers(0, len(LAST_NAMES), count)
    domain = rng.integers(0, len(MAIL_DOMAINS), count)
    return [
        f"{FIRST_NAMES[f]}.{LAST_NAMES[s]}{i}@{MAIL_DOMAINS[d]}"
        for i, (f, s, d) in enumerate(zip(first, last, domain))
    ]


# ----------------------------------------------------------- benign traffic

def _session_starts(rng: np.random.Generator, count: int, t0: float, t1: float) -> np.ndarray:
    """Draw ``count`` times in [t0, t1) following the hourly rate profile."""
    minute_edges = np.arange(np.floor(t0 / 60) * 60, t1 + 60, 60.0)
    hours = ((minute_edges[:-1] // 3600) % 24).astype(int)
    weights = HOURLY_RATE[hours] * (1 + 0.1 * np.sin(minute_edges[:-1] / 86_400 * 2 * np.pi / 7))
    cumulative = np.cumsum(weights)
    minutes = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    starts = minute_edges[minutes] + rng.random(count) * 60.0
    return np.clip(starts, t0, np.nextafter(t1, t0))


def _benign_sessions(tables: Tables, rng: np.random.Generator, class_: ClientClass, lines: int,
                     t0: float, t1: float) -> pl.DataFrame:
    """Draw exactly ``lines`` requests of one client class as sessions in [t0, t1)."""
    if lines <= 0:
        return pl.DataFrame(schema=ROW_SCHEMA)
    sessions = int(lines / class_.mean_session * 1.2) + 10
    lengths = rng.geometric(1.0 / class_.mean_session, sessions)
    while lengths.sum() < lines:
        lengths = np.concatenate((lengths, rng.geometric(1.0 / class_.mean_session, sessions)))
    total = np.cumsum(lengths)
    used = int(np.searchsorted(total, lines)) + 1
    lengths = lengths[:used]
    lengths[-1] -= int(total[used - 1] - lines)
    session_of_line = np.repeat(np.arange(used), lengths)
    first_line = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    gaps = np.where(rng.random(lines) < class_.burst, rng.random(lines) * 0.5,
                    rng.exponential(class_.mean_gap, lines))
    gaps[first_line] = 0.0
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first_line], lengths)
    durations = offsets[np.cumsum(lengths) - 1]
    starts = _session_starts(rng, used, t0, t1)
    starts = np.clip(starts, t0, np.maximum(t0, t1 - 1.0 - durations))
    t = np.minimum(np.repeat(starts, lengths) + offsets, np.nextafter(t1, t0))

    client_pool = tables.class_clients[class_.name]
    session_client = client_pool[rng.choice(len(client_pool), size=used, p=tables.class_weights[class_.name])]
    client = np.repeat(session_client, lengths)

    names = list(class_.endpoints)
    weights = np.array([class_.endpoints[n] for n in names], dtype=float)
    endpoint_ids = np.array([ENDPOINT_INDEX[n] for n in names], dtype=np.int16)
    endpoint = endpoint_ids[rng.choice(len(names), size=lines, p=weights / weights.sum())]

    number, text = _numbers_and_texts(tables, rng, endpoint)
    status, size = _statuses_and_sizes(rng, endpoint)
    user = np.full(lines, -1, dtype=np.int32)
    is_login = endpoint == ENDPOINT_INDEX["api_login"]
    if class_.name == "app":
        app_index = client - client_pool[0]
        user[is_login] = tables.app_accounts[app_index[is_login]]
    elif class_.name == "integration":
        for index in np.unique(client[is_login]):
            user[is_login & (client == index)] = tables.users.add(f"svc-{index % 97:02d}-sync")
    referer = _referers(rng, class_.name, endpoint)
    duration = np.maximum(1, rng.lognormal(np.log(25.0), 0.9, lines)).astype(np.int32)
    return pl.DataFrame({
        "t": t, "client": client, "endpoint": endpoint, "text": text, "number": number,
        "status": status, "size": size, "user": user, "referer": referer, "duration_ms": duration,
    }, schema=ROW_SCHEMA)


def _numbers_and_texts(tables: Tables, rng: np.random.Generator, endpoint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the number and text of each request from its endpoint's template."""
    count = len(endpoint)
    # Product popularity is heavy-tailed: a Zipf rank mapped onto the catalogue.
    product = (rng.zipf(1.3, count) * 7919) % PRODUCT_COUNT + 1
    # A few requests ask for products that no longer exist.
    product = np.where(rng.random(count) < 0.01, PRODUCT_COUNT + rng.integers(1, 5000, count), product)
    kinds = {
        "product": product,
        "page": rng.geometric(0.45, count),
        "order": rng.integers(100_000, 999_999, count),
    }
    number = np.full(count, -1, dtype=np.int64)
    text = np.zeros(count, dtype=np.int32)
    for index, spec in enumerate(ENDPOINTS):
        rows = endpoint == index
        if not rows.any():
            continue
        if spec.number:
            number[rows] = kinds[spec.number][rows]
        if spec.text == "slug":
            first, length = tables.text_ranges["slug"]
            text[rows] = first + (number[rows] % length)
        elif spec.text in tables.text_ranges:
            first, length = tables.text_ranges[spec.text]
            text[rows] = first + rng.integers(0, length, int(rows.sum()))
    return number, text


def _statuses_and_sizes(rng: np.random.Generator, endpoint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = len(endpoint)
    status = np.zeros(count, dtype=np.int16)
    median = np.zeros(count, dtype=np.float64)
    draw = rng.random(count)
    for index, spec in enumerate(ENDPOINTS):
        rows = endpoint == index
        if not rows.any():
            continue
        status[rows] = spec.ok_status
        median[rows] = spec.median_bytes
        threshold = 0.0
        for code, probability in spec.errors:
            hit = rows & (draw >= threshold) & (draw < threshold + probability)
            status[hit] = code
            threshold += probability
    # Rare server errors on any endpoint.
    status[rng.random(count) < 0.0008] = 502
    size = np.where(median > 0, rng.lognormal(np.log(np.maximum(median, 1)), 0.35, count), 0).astype(np.int32)
    size[(status == 304) | (status == 204)] = 0
    size[status == 404] = 153
    size[status == 401] = 61
    size[status == 502] = 157
    return status, size


def _referers(rng: np.random.Generator, class_name: str, endpoint: np.ndarray) -> np.ndarray:
    count = len(endpoint)
    if class_name != "browser":
        return np.zeros(count, dtype=np.int8)
    draw = rng.random(count)
    referer = np.where(draw < 0.75, 1, np.where(draw < 0.85, 2, np.where(draw < 0.92, 3, np.where(draw < 0.97, 4, 0))))
    return referer.astype(np.int8)


def _health_checks(tables: Tables, t0: float, t1: float, interval: float) -> pl.DataFrame:
    """Two load balancers each checking /healthz every ``interval`` seconds."""
    frames = []
    for i, phase in enumerate((0.0, interval / 2)):
        client = tables.clients.add(f"10.0.0.{11 + i}", "ELB-HealthChecker/2.0")
        t = np.arange(t0 + phase, t1, interval)
        frames.append(_literal_frame(t, client, ENDPOINT_INDEX["health"], status=200, size=2, duration_ms=1))
    return pl.concat(frames)


def _literal_frame(t: np.ndarray, client: int, endpoint: int, status: int, size: int, duration_ms: int) -> pl.DataFrame:
    count = len(t)
    return pl.DataFrame({
        "t": t, "client": np.full(count, client), "endpoint": np.full(count, endpoint),
        "text": np.zeros(count), "number": np.full(count, -1), "status": np.full(count, status),
        "size": np.full(count, size), "user": np.full(count, -1), "referer": np.zeros(count),
        "duration_ms": np.full(count, duration_ms),
    }, schema=ROW_SCHEMA)


def build_benign(tables: Tables, rng: np.random.Generator, lines: int, t0: float, t1: float) -> pl.DataFrame:
    """Draw exactly ``lines`` benign requests in [t0, t1): health checks, then sessions."""
    # Each balancer checks every 5 s, or less often when that keeps health
    # checks at 4% of the lines.
    interval = max(5.0, 2 * (t1 - t0) / max(1.0, 0.04 * lines))
    health = _health_checks(tables, t0, t1, interval)
    budget = lines - health.height
    frames = [health]
    remaining = budget
    for position, class_ in enumerate(CLIENT_CLASSES):
        share = remaining if position == len(CLIENT_CLASSES) - 1 else int(budget * class_.share)
        frames.append(_benign_sessions(tables, rng, class_, share, t0, t1))
        remaining -= share
    return pl.concat(frames)


# ----------------------------------------------------------- labelled actors

@dataclass
class ActorRows:
    """Requests of one attacker or near miss, built line by line."""

    tables: Tables
    client: int
    rows: dict[str, list] = field(default_factory=lambda: {name: [] for name in ROW_SCHEMA})

    def add(self, t: float, method: str, target: str, status: int, size: int, user: str | None = None,
            duration_ms: int = 30) -> None:
        self.add_endpoint(t, LITERAL_ENDPOINTS[method], status, size, text=self.tables.texts.add(target),
                          user=user, duration_ms=duration_ms)

    def add_endpoint(self, t: float, endpoint: str, status: int, size: int, text: int = 0, number: int = -1,
                     user: str | None = None, duration_ms: int = 30) -> None:
        row = self.rows
        row["t"].append(t)
        row["client"].append(self.client)
        row["endpoint"].append(ENDPOINT_INDEX[endpoint])
        row["text"].append(text)
        row["number"].append(number)
        row["status"].append(status)
        row["size"].append(size)
        row["user"].append(-1 if user is None else self.tables.users.add(user))
        row["referer"].append(0)
        row["duration_ms"].append(duration_ms)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=ROW_SCHEMA)


def _iso(t: float) -> str:
    return (START + timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _victims(rand: random.Random, count: int) -> list[str]:
    """Draw ``count`` distinct account names in the order an attacker tries them."""
    # A dict, not a set: its order does not depend on string hashing, which
    # Python randomizes per process.
    names: dict[str, None] = {}
    while len(names) < count:
        suffix = rand.choice(["", str(rand.randint(1, 99))])
        names[f"{rand.choice(FIRST_NAMES)}.{rand.choice(LAST_NAMES)}{suffix}@{rand.choice(MAIL_DOMAINS)}"] = None
    return list(names)


def credential_stuffing(actor: ActorRows, rand: random.Random, start: float) -> str:
    attempts = rand.randint(40, 300)
    rate = rand.uniform(0.3, 2.0)
    t = start
    for user in _victims(rand, attempts):
        success = rand.random() < 0.02
        actor.add_endpoint(t, "api_login", 200 if success else 401, 430 if success else 61, user=user,
                           duration_ms=rand.randint(80, 250))
        t += rand.expovariate(rate)
    return f"{attempts} API logins over {attempts} accounts at about {rate:.1f} per second"


def scraping(actor: ActorRows, rand: random.Random, start: float) -> str:
    count = rand.randint(250, 700)
    first = rand.randint(1, PRODUCT_COUNT - count)
    ids = list(range(first, first + count)) if rand.random() < 0.5 else rand.sample(range(1, PRODUCT_COUNT + 3000), count)
    t = start
    low, high = sorted((rand.uniform(3, 10), rand.uniform(4, 12)))
    for product in ids:
        found = product <= PRODUCT_COUNT
        actor.add_endpoint(t, "api_product", 200 if found else 404, rand.randint(2500, 5000) if found else 153,
                           number=product)
        t += rand.uniform(low, high)
    return f"{count} distinct product ids, one every {low:.0f}-{high:.0f} s"


def flood(actor: ActorRows, rand: random.Random, start: float) -> str:
    count = rand.randint(1500, 4000)
    rate = rand.uniform(6, 20)
    t = start
    targets = rand.sample(FLOOD_TARGETS, rand.randint(1, 3))
    for _ in range(count):
        overloaded = rand.random() < 0.15
        actor.add(t, "GET", rand.choice(targets), 503 if overloaded else 200,
                  197 if overloaded else rand.randint(4000, 30000), duration_ms=rand.randint(200, 3000))
        t += rand.expovariate(rate)
    return f"{count} requests at about {rate:.0f} per second"


def sensitive_probe(actor: ActorRows, rand: random.Random, start: float) -> str:
    paths = rand.sample(SENSITIVE_PATHS, rand.randint(15, 40))
    t = start
    for path in paths:
        if path in ("/wp-admin/", "/phpmyadmin/"):
            status, size = 301, 169
        elif path.startswith("/.ht"):
            status, size = 403, 153
        elif path == "/actuator/health" and rand.random() < 0.5:
            status, size = 200, 15
        else:
            status, size = 404, 153
        method = "HEAD" if rand.random() < 0.1 else "GET"
        actor.add(t, method, path, status, size)
        t += rand.uniform(0.2, 6.0)
    return f"{len(paths)} distinct paths from a secrets and admin-panel wordlist"


def _encode_payload(rand: random.Random, value: str) -> str:
    style = rand.random()
    if style < 0.4:
        # Minimal encoding, as typed by hand: quotes, brackets and operators stay raw.
        return quote(value, safe="'<>()=,;:/\\*@!$-_.~\"")
    if style < 0.85:
        return quote(value, safe="")
    return quote(quote(value, safe=""), safe="")


def url_injection(actor: ActorRows, rand: random.Random, start: float) -> str:
    count = rand.randint(8, 40)
    t = start
    for _ in range(count):
        if rand.random() < 0.25:
            actor.add(t, "GET", f"/api/v1/products/{rand.randint(1, PRODUCT_COUNT)}", 200, rand.randint(2500, 5000))
        else:
            path, name, payload = rand.choice(INJECTION_PAYLOADS)
            status = rand.choice([200, 400, 400, 404, 500])
            actor.add(t, "GET", f"{path}?{name}={_encode_payload(rand, payload)}", status, rand.randint(60, 900))
        t += rand.uniform(1, 25)
    return f"{count} requests, about three in four with SQL injection, XSS or traversal payloads"


def waf_blocks(actor: ActorRows, rand: random.Random, start: float) -> str:
    count = rand.randint(25, 120)
    t = start
    for _ in range(count):
        method, path = rand.choice(BLOCKED_REQUESTS)
        actor.add(t, method, path, 403, 548)
        t += rand.uniform(2, 15)
    return f"{count} requests blocked with 403; the payloads are in bodies, so URLs look clean"


@dataclass(frozen=True)
class ActorKind:
    kind: str
    rule: str | None
    build: object
    # Maximum time from the actor's first request to its last, used to keep it inside the data.
    max_seconds: float


ATTACK_KINDS = [
    ActorKind("credential stuffing", "credential-stuffing", credential_stuffing, 1200),
    ActorKind("scraping", "scraping", scraping, 8500),
    ActorKind("request flood", "request-flood", flood, 800),
    ActorKind("sensitive-file probe", "sensitive-file-probe", sensitive_probe, 300),
    ActorKind("url injection", "url-injection", url_injection, 1100),
    ActorKind("repeated 403 blocks", "waf-blocks-repeated", waf_blocks, 1900),
]


def stale_password_job(actor: ActorRows, rand: random.Random, start: float) -> str:
    user = f"svc-export-{rand.randint(10, 99)}"
    t = start
    for _ in range(rand.randint(60, 120)):
        actor.add_endpoint(t, "api_login", 401, 61, user=user, duration_ms=90)
        t += rand.uniform(30, 32)
    return "one service account failing every 30 s: 20 failures per 10 minutes, one account"


def partner_sync(actor: ActorRows, rand: random.Random, start: float) -> str:
    t = start
    for page in range(1, 1201):
        actor.add(t, "GET", f"/api/v1/orders?updated_since=2026-11-01T00:00:00Z&page={page}", 200,
                  rand.randint(20000, 30000))
        t += 1.0
    return "1,200 requests at one per second: 300 per 5 minutes"


def price_crawler(actor: ActorRows, rand: random.Random, start: float) -> str:
    t = start
    count = rand.randint(180, 300)
    for product in rand.sample(range(1, PRODUCT_COUNT), count):
        actor.add_endpoint(t, "api_product", 200, rand.randint(2500, 5000), number=product)
        t += rand.uniform(60, 64)
    return f"{count} products at one a minute: about 58 distinct per hour"


def drive_by_probe(actor: ActorRows, rand: random.Random, start: float) -> str:
    actor.add(start, "GET", "/.env", 404, 153)
    actor.add(start + rand.uniform(0.5, 2), "GET", "/.git/config", 404, 153)
    return "two sensitive paths"


def missing_scope(actor: ActorRows, rand: random.Random, start: float) -> str:
    t = start
    for _ in range(8):
        actor.add(t, "GET", "/api/v1/admin/reports/daily?date=2026-11-01", 403, 74)
        t += rand.uniform(60, 80)
    return "8 requests refused with 403 in about 10 minutes"


NEAR_MISS_KINDS = [
    ActorKind("stale password", "credential-stuffing", stale_password_job, 3900),
    ActorKind("partner sync", "request-flood", partner_sync, 1200),
    ActorKind("price crawler", "scraping", price_crawler, 19300),
    ActorKind("drive-by probe", "sensitive-file-probe", drive_by_probe, 3),
    ActorKind("token without scope", "waf-blocks-repeated", missing_scope, 650),
]


def build_actors(tables: Tables, seed: int, lines: int, t0: float, t1: float) -> tuple[pl.DataFrame, list, list]:
    """Build every attacker and near miss; return their rows and ground truth."""
    frames = []
    attackers: list[dict] = []
    near_misses: list[dict] = []
    serial = 0
    for kinds, per_million, records in ((ATTACK_KINDS, ATTACKERS_PER_MILLION, attackers),
                                        (NEAR_MISS_KINDS, NEAR_MISSES_PER_MILLION, near_misses)):
        for kind in kinds:
            for number in range(actor_count(lines, per_million)):
                rand = random.Random(f"{seed}:{kind.kind}:{number}")
                if records is attackers:
                    ip = (_canonical(f"2001:db8:bad:{serial >> 16:x}::{serial & 0xFFFF:x}") if serial % 4 == 3
                          else _ipv4((198 << 24 | 18 << 16) + 1 + serial))
                    agent = rand.choice(ATTACK_AGENTS)
                else:
                    ip = _numbered_address("192.0.2", "2001:db8:5afe::", serial, 100, 250)
                    agent = rand.choice(INTEGRATION_AGENTS)
                serial += 1
                actor = ActorRows(tables, tables.clients.add(ip, agent))
                # Leave an hour at the end, so every window has closed before
                # the watermark (newest event minus the allowed lateness).
                latest = t1 - kind.max_seconds - 3600
                if latest < t0 + 1800:
                    raise ValueError(
                        f"the time span of {t1 - t0:.0f} s is too short for the {kind.kind} actor; "
                        "increase MIN_SPAN_SECONDS"
                    )
                start = rand.uniform(t0 + 1800, latest)
                note = kind.build(actor, rand, start)
                frame = actor.frame()
                frames.append(frame)
                record = {
                    "client_ip": ip,
                    "kind": kind.kind,
                    "rule" if records is attackers else "near_rule": kind.rule,
                    "first_seen": _iso(frame["t"].min()),
                    "last_seen": _iso(frame["t"].max()),
                    "requests": frame.height,
                    "note": note,
                }
                records.append(record)
    return pl.concat(frames), attackers, near_misses


# ------------------------------------------------------------------ writing

def _escape(values: list[str], format_name: str) -> pl.Series:
    """Escape quotes and backslashes the way nginx writes them in each format.

    The generated strings contain no control characters, so only these two
    are escaped.
    """
    series = pl.Series(values, dtype=pl.String)
    if format_name != "nginx_json":
        return series.str.replace_all("\\", "\\x5C", literal=True).str.replace_all('"', "\\x22", literal=True)
    return series.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)


@dataclass
class Formatter:
    """Builder of the log lines of one format from rows."""

    tables: Tables
    format_name: str
    first_second: int
    last_second: int

    def __post_init__(self) -> None:
        fmt = self.format_name
        seconds = pl.Series(np.arange(self.first_second, self.last_second + 1, dtype=np.int64) + int(START.timestamp()))
        stamp = "%d/%b/%Y:%H:%M:%S +0000" if fmt != "nginx_json" else "%Y-%m-%dT%H:%M:%S+00:00"
        self.times = pl.from_epoch(seconds, time_unit="s").dt.strftime(stamp)
        clients = self.tables.clients
        self.ip = pl.Series(clients.ip)
        self.agent = _escape(clients.agent, fmt)
        self.protocol = pl.Series(clients.protocol)
        self.texts = _escape(self.tables.texts.values, fmt)
        placeholder = "-" if fmt != "nginx_json" else ""
        self.users = _escape(self.tables.users.values, fmt)
        self.no_user = placeholder
        self.referers = pl.Series([value or placeholder for value in REFERERS])
        self.method = pl.Series([e.method for e in ENDPOINTS])
        self.prefix = pl.Series([e.prefix for e in ENDPOINTS])
        self.middle = pl.Series([e.middle for e in ENDPOINTS])
        self.suffix = pl.Series([e.suffix for e in ENDPOINTS])

    def lines(self, block: pl.DataFrame) -> pl.Series:
        endpoint = block["endpoint"]
        client = block["client"]
        frame = pl.DataFrame({
            "time": self.times.gather(block["t"].floor().cast(pl.Int64) - self.first_second),
            "ip": self.ip.gather(client),
            "user": self.users.gather(block["user"].clip(lower_bound=0)),
            "user_index": block["user"],
            "method": self.method.gather(endpoint),
            "prefix": self.prefix.gather(endpoint),
            "text": self.texts.gather(block["text"]),
            "middle": self.middle.gather(endpoint),
            "number": block["number"],
            "suffix": self.suffix.gather(endpoint),
            "protocol": self.protocol.gather(client),
            "status": block["status"],
            "size": block["size"],
            "referer": self.referers.gather(block["referer"]),
            "agent": self.agent.gather(client),
            "duration": block["duration_ms"],
        })
        request = pl.concat_str(
            [pl.col("method"), pl.lit(" "), pl.col("prefix"), pl.col("text"), pl.col("middle"),
             pl.when(pl.col("number") >= 0).then(pl.col("number").cast(pl.String)),
             pl.col("suffix"), pl.lit(" "), pl.col("protocol")],
            ignore_nulls=True,
        )
        user = pl.when(pl.col("user_index") >= 0).then(pl.col("user")).otherwise(pl.lit(self.no_user))
        status = pl.col("status").cast(pl.String)
        size = pl.col("size").cast(pl.String)
        if self.format_name != "nginx_json":
            vhost = [pl.lit(VHOST + " ")] if self.format_name == "apache_vhost" else []
            parts = [
                *vhost, pl.col("ip"), pl.lit(" - "), user, pl.lit(" ["), pl.col("time"), pl.lit('] "'),
                request, pl.lit('" '), status, pl.lit(" "), size, pl.lit(' "'),
                pl.col("referer"), pl.lit('" "'), pl.col("agent"), pl.lit('"'),
            ]
        else:
            seconds = (pl.col("duration") // 1000).cast(pl.String)
            millis = (pl.col("duration") % 1000).cast(pl.String).str.zfill(3)
            parts = [
                pl.lit('{"time_iso8601":"'), pl.col("time"),
                pl.lit('","remote_addr":"'), pl.col("ip"),
                pl.lit('","request":"'), request,
                pl.lit('","status":"'), status,
                pl.lit('","body_bytes_sent":"'), size,
                pl.lit('","http_referer":"'), pl.col("referer"),
                pl.lit('","http_user_agent":"'), pl.col("agent"),
                pl.lit('","remote_user":"'), user,
                pl.lit('","request_time":"'), seconds, pl.lit("."), millis, pl.lit('"}'),
            ]
        return frame.select(pl.concat_str(parts)).to_series()


def write_rows(rows: pl.DataFrame, tables: Tables, paths: dict[str, Path], first_second: int, last_second: int) -> None:
    """Write ``rows`` (sorted by time) to one file per format, a block at a time."""
    formatters = {name: Formatter(tables, name, first_second, last_second) for name in paths}
    handles = {name: open(path, "wb") for name, path in paths.items()}
    try:
        for start in range(0, rows.height, WRITE_BLOCK_ROWS):
            block = rows.slice(start, WRITE_BLOCK_ROWS)
            for name, formatter in formatters.items():
                # With quote_style "never", a one-column CSV is the lines as they
                # are, one per row, and polars writes it with several threads.
                lines = formatter.lines(block).to_frame("line")
                lines.write_csv(handles[name], include_header=False, quote_style="never")
    finally:
        for handle in handles.values():
            handle.close()


# --------------------------------------------------------------------- main

@dataclass
class Generated:
    files: dict[str, Path]
    append_files: dict[str, Path]
    truth: Path
    seconds: float


def generate(lines: int, out_dir: Path, seed: int = DEFAULT_SEED, formats: tuple[str, ...] = FORMATS,
             lines_per_day: int = DEFAULT_LINES_PER_DAY, append_fraction: float = 0.01) -> Generated:
    """Write ``lines`` lines per format, the continuation and the ground truth into ``out_dir``."""
    began = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    span = span_seconds(lines, lines_per_day)
    tables = build_tables(lines, seed)
    actors, attackers, near_misses = build_actors(tables, seed, lines, 0.0, span)
    if actors.height >= lines:
        raise ValueError(f"--lines {lines} is too small for the labelled actors ({actors.height} lines); use more")
    benign = build_benign(tables, np.random.default_rng([seed, 2]), lines - actors.height, 0.0, span)
    rows = pl.concat([benign, actors]).sort("t", maintain_order=True)

    append_lines = max(1, round(lines * append_fraction))
    append_span = span * append_fraction
    appended = build_benign(tables, np.random.default_rng([seed, 3]), append_lines, span, span + append_span)
    appended = appended.sort("t", maintain_order=True)

    last_second = int(span + append_span) + 1
    files = {name: out_dir / FILE_NAMES[name] for name in formats}
    append_files = {name: out_dir / APPEND_NAMES[name] for name in formats}
    write_rows(rows, tables, files, 0, last_second)
    write_rows(appended, tables, append_files, 0, last_second)

    truth = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "lines": lines,
        "lines_per_day": lines_per_day,
        "start": _iso(0),
        "end": _iso(span),
        "append_lines": append_lines,
        "append_end": _iso(span + append_span),
        "attacker_lines": int(sum(a["requests"] for a in attackers)),
        "near_miss_lines": int(sum(n["requests"] for n in near_misses)),
        "attackers": attackers,
        "near_misses": near_misses,
    }
    truth_path = out_dir / TRUTH_NAME
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return Generated(files, append_files, truth_path, time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, required=True, help="lines per format in the main file")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: combined, nginx_json, apache_vhost")
    parser.add_argument("--lines-per-day", type=int, default=DEFAULT_LINES_PER_DAY,
                        help="lines per day of log time; sets the time span (default: %(default)s)")
    parser.add_argument("--append-fraction", type=float, default=0.01,
                        help="size of the continuation files as a fraction of --lines (default: %(default)s)")
    args = parser.parse_args()
    formats = tuple(name.strip() for name in args.formats.split(",") if name.strip())
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown format {sorted(unknown)[0]!r}; use {', '.join(FORMATS)}")
    result = generate(args.lines, args.out, args.seed, formats, args.lines_per_day, args.append_fraction)
    for name, path in result.files.items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"ground truth: {result.truth}")
    print(f"generated in {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
