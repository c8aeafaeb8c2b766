#!/usr/bin/env python3
"""Generate one day of nginx access logs for a web shop, with labelled attacks.

The day is 2026-11-03 UTC on ``shop.example.com``: a web front, the JSON API
under ``/api/v1/`` that its pages, a mobile app and integrations call, a load
balancer health check, crawlers, and one attacker for each built-in rule.
Lines use the nginx ``combined`` format. The script writes, next to itself:

- ``access.log.2.gz``: 00:00-08:00, gzip-compressed (oldest part)
- ``access.log.1``: 08:00-16:00
- ``access.log``: 16:00-24:00 (newest part)
- ``attackers.yaml``: each attacking client, the rule expected to fire on it,
  and the benign near misses that must stay quiet

The split imitates logrotate with ``compress`` and ``delaycompress``. The output
depends only on ``SEED``: every actor draws from its own ``random.Random``
seeded with ``"<SEED>:<actor>"``, and no wall-clock time is read, so running
the script again rewrites byte-identical files.

Address plan: attackers use 203.0.113.0/24 and 2001:db8:bad::/48 only. Benign
clients use 198.51.100.0/24, 192.0.2.0/24, other parts of 2001:db8::/32,
100.64.0.0/10 (carrier-grade NAT), 172.16.0.0/12 (office VPN) and 10.0.0.0/8
(load balancer). Rules must not rely on this split.
"""

from __future__ import annotations

import argparse
import gzip
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote_plus

SEED = 20261103
START = datetime(2026, 11, 3, tzinfo=timezone.utc)
DAY_SECONDS = 86_400
SITE = "https://shop.example.com"

# Seconds after START at which logrotate cut the file. The day is written as
# access.log.2.gz [0, 8h), access.log.1 [8h, 16h) and access.log [16h, 24h).
ROTATIONS = (8 * 3600, 16 * 3600)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Relative share of browser and app sessions starting in each UTC hour.
HOURLY_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 11, 10, 9, 9, 10, 11, 13, 14, 13, 10, 6, 3)

BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36 Edg/129.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1",
)

IOS_APP_AGENT = "ShopApp/5.12.1 (com.example.shop; build:5121; iOS 18.1.0) Alamofire/5.9.1"
ANDROID_APP_AGENT = "ShopApp/5.12.0 (Android 14; SM-S918B; build:5120) okhttp/4.12.0"
GOOGLEBOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_MOBILE_AGENT = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0.6723.69 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
BINGBOT_AGENT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"

EXTERNAL_REFERERS = (
    "-", "-", "-",
    "https://www.google.com/", "https://www.google.com/", "https://www.google.com/",
    "https://www.bing.com/", "https://duckduckgo.com/",
    "https://l.instagram.com/", "https://newsletter.example.com/2026-11",
)

CATEGORIES = ("shoes", "boots", "jackets", "knitwear", "shirts", "trousers", "bags",
              "accessories", "home", "kids", "sale")

# Real searches that contain quotes, SQL keywords, "<" or "%", so that the
# url-injection rule is tested against them.
TRICKY_SEARCH_TERMS = (
    "men's boots", "levi's 501", "rock 'n' roll tee", "o'neill jacket",
    "union jack cushion", "select fit chinos", "drop shoulder sweater", "sleep mask",
    "i <3 ny mug", "1/2 zip fleece", "black & white print", "salt and pepper grinder",
    "50% off", "kids' wellies", "update: new arrivals",
)
SEARCH_TERMS = (
    "boots", "wool scarf", "rain jacket", "sneakers", "gift card", "linen shirt",
    "chelsea boots", "merino", "down jacket", "tote bag", "beanie", "slippers",
    "table runner",
) + TRICKY_SEARCH_TERMS

ADJECTIVES = ("classic", "merino", "waxed", "suede", "organic", "quilted", "linen",
              "recycled", "heritage", "ribbed", "canvas", "leather", "alpine", "cord")
NOUNS = ("chelsea-boot", "overshirt", "beanie", "parka", "crew-sweater", "tote",
         "runner", "chino", "scarf", "cardigan", "field-jacket", "loafer", "backpack",
         "throw", "mug", "hoodie", "wellies", "gloves")

FIRST_NAMES = ("anna", "ben", "carla", "david", "elena", "felix", "grace", "hugo", "ines",
               "jonas", "kate", "liam", "mia", "noah", "olivia", "paul", "quinn", "rosa",
               "sam", "tara", "umar", "vera", "will", "xena", "yusuf", "zoe", "marco",
               "lena", "tom", "nina", "oscar", "ruth", "sofia", "theo", "alex", "chris")
LAST_NAMES = ("smith", "meyer", "rossi", "novak", "garcia", "jensen", "kowalski",
              "dubois", "silva", "murphy", "berg", "lee", "khan", "walsh", "fischer",
              "moreau", "costa", "ward", "holm", "brandt", "evans", "weber", "nagy")
MAIL_DOMAINS = ("example.com", "example.net", "example.org")


def ip4(prefix: str, host: int) -> str:
    return f"{prefix}.{host}"


@dataclass
class Actor:
    """A labelled client: an attacker or a benign near miss."""

    client_ip: str
    kind: str
    rule: str
    note: str
    also: tuple[str, ...] = ()


@dataclass
class AccessLog:
    """The day's access log lines, kept with their time for sorting."""

    entries: list[tuple[float, int, str]] = field(default_factory=list)

    def add(self, t: float, ip: str, method: str, target: str, status: int, size: int,
            agent: str, referer: str = "-", user: str = "-", protocol: str = "HTTP/1.1") -> None:
        """Append one request that finished ``t`` seconds after START."""
        if not 0 <= t < DAY_SECONDS:
            return
        stamp = START + timedelta(seconds=int(t))
        time_local = (f"{stamp.day:02d}/{MONTHS[stamp.month - 1]}/{stamp.year}:"
                      f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d} +0000")
        line = (f'{ip} - {user} [{time_local}] "{method} {target} {protocol}" {status} {size} '
                f'"{referer}" "{agent}"')
        self.entries.append((t, len(self.entries), line))

    def sorted_lines(self) -> list[tuple[float, str]]:
        return [(t, line) for t, _, line in sorted(self.entries)]


@dataclass
class Catalog:
    """Products 1001-1960. A few ids are deleted, and requests for them return 404."""

    rng: random.Random
    ids: list[int] = field(default_factory=list)
    deleted: frozenset[int] = frozenset()
    slugs: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = list(range(1001, 1961))
        self.deleted = frozenset(i for i in self.ids if self.rng.random() < 0.04)
        for product_id in self.ids:
            slug = f"{self.rng.choice(ADJECTIVES)}-{self.rng.choice(NOUNS)}"
            self.slugs[product_id] = f"{slug}-{product_id}"

    def popular(self, rng: random.Random) -> int:
        """Draw a product id, skewed towards a few best sellers as real traffic is."""
        index = min(int(rng.paretovariate(1.2)) - 1, len(self.ids) - 1)
        index = (index * 37) % len(self.ids)
        return self.ids[index]

    def page_path(self, product_id: int) -> str:
        return f"/p/{self.slugs[product_id]}"

    def status(self, product_id: int) -> int:
        return 404 if product_id in self.deleted else 200


def actor_rng(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def session_start(rng: random.Random) -> float:
    hour = rng.choices(range(24), weights=HOURLY_WEIGHTS)[0]
    return hour * 3600 + rng.uniform(0, 3600)


def think_time(rng: random.Random) -> float:
    """Seconds a person spends on a page before the next click."""
    return min(rng.lognormvariate(3.0, 0.9), 600.0)


def email(rng: random.Random) -> str:
    name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
    if rng.random() < 0.4:
        name += str(rng.randint(1, 99))
    return f"{name}@{rng.choice(MAIL_DOMAINS)}"


# --------------------------------------------------------------------------
# Infrastructure and benign clients
# --------------------------------------------------------------------------

def add_health_checks(log: AccessLog) -> None:
    """Add the load balancer's GET /healthz, every 20-30 s all day."""
    rng = actor_rng("health")
    t = rng.uniform(0, 30)
    while t < DAY_SECONDS:
        log.add(t, "10.0.1.23", "GET", "/healthz", 200, 2, "ELB-HealthChecker/2.0")
        t += rng.uniform(20, 30)


class BrowserSession:
    """One visitor clicking through the web front, with its assets and XHR calls."""

    ASSETS = (
        ("/static/css/main.8f3c2a.css", 48_212),
        ("/static/js/vendor.71d0e4.js", 391_540),
        ("/static/js/app.c94b1f.js", 162_877),
        ("/static/fonts/inter-var.2b9e.woff2", 112_404),
        ("/static/img/logo.svg", 3_918),
        ("/favicon.ico", 15_086),
    )

    def __init__(self, log: AccessLog, rng: random.Random, catalog: Catalog, ip: str,
                 agent: str, start: float):
        self.log, self.rng, self.catalog = log, rng, catalog
        self.ip, self.agent, self.t = ip, agent, start
        self.cached = rng.random() < 0.3
        self.first_page = True

    def get(self, target: str, status: int, size: int, referer: str, delay: float,
            method: str = "GET") -> None:
        self.log.add(self.t + delay, self.ip, method, target, status, size, self.agent,
                     referer=referer, protocol="HTTP/2.0")

    def page(self, path: str, referer: str, status: int = 200) -> None:
        """Load an HTML page and, on the first page, the static assets."""
        rng = self.rng
        size = rng.randint(18_000, 64_000) if status == 200 else 6_214
        self.get(path, status, size, referer, 0.0)
        if self.first_page:
            for asset, asset_size in self.ASSETS:
                if self.cached:
                    self.get(asset, 304, 0, SITE + path, rng.uniform(0.1, 0.9))
                else:
                    self.get(asset, 200, asset_size, SITE + path, rng.uniform(0.1, 1.6))
            if "iPhone" in self.agent or "iPad" in self.agent:
                self.get("/apple-touch-icon-precomposed.png", 404, 153, "-", rng.uniform(0.5, 2))
                self.get("/apple-touch-icon.png", 404, 153, "-", rng.uniform(0.5, 2))
            self.first_page = False

    def xhr(self, target: str, status: int, size: int, page_path: str,
            method: str = "GET") -> None:
        self.get(target, status, size, SITE + page_path, self.rng.uniform(0.3, 1.5), method)

    def images(self, product_ids: list[int], width: int, page_path: str) -> None:
        for product_id in product_ids:
            status = 200 if not self.cached or self.rng.random() < 0.5 else 304
            size = self.rng.randint(9_000, 90_000) if status == 200 else 0
            self.get(f"/media/products/{product_id}/1-{width}.webp", status, size,
                     SITE + page_path, self.rng.uniform(0.4, 2.5))

    def run(self, pages: int, login_failures: int = -1) -> None:
        """Visit ``pages`` pages, logging in on the second one when ``login_failures`` >= 0."""
        rng, catalog = self.rng, self.catalog
        referer = rng.choice(EXTERNAL_REFERERS)
        kind = rng.choices(("home", "product", "category", "search"), weights=(5, 4, 2, 1))[0]
        product_id = catalog.popular(rng)
        for number in range(pages):
            if number == 1 and login_failures >= 0:
                self.login(referer, login_failures)
                referer = SITE + "/account"
                kind = "category"
            path = self.visit(kind, product_id, referer)
            referer = SITE + path
            self.t += think_time(rng)
            kind = rng.choices(("home", "product", "category", "search", "cart"),
                               weights=(1, 6, 3, 2, 1))[0]
            product_id = catalog.popular(rng) if rng.random() < 0.6 else rng.choice(catalog.ids)

    def visit(self, kind: str, product_id: int, referer: str) -> str:
        rng, catalog = self.rng, self.catalog
        if kind == "home":
            path = "/"
            self.page(path, referer)
            self.images([catalog.popular(rng) for _ in range(4)], 320, path)
        elif kind == "category":
            category = rng.choice(CATEGORIES)
            path = f"/c/{category}" + (f"?page={rng.randint(2, 4)}" if rng.random() < 0.2 else "")
            self.page(path, referer)
            self.xhr(f"/api/v1/products?category={category}&page=1", 200,
                     rng.randint(6_000, 14_000), path)
            self.images([rng.choice(catalog.ids) for _ in range(rng.randint(3, 6))], 320, path)
        elif kind == "search":
            term = quote_plus(rng.choice(SEARCH_TERMS))
            path = f"/search?q={term}"
            self.page(path, referer)
            self.xhr(f"/api/v1/search?q={term}", 200, rng.randint(900, 9_000), path)
        elif kind == "cart":
            path = "/cart"
            self.page(path, referer)
            self.xhr("/api/v1/cart", 200, rng.randint(400, 2_400), path)
            if rng.random() < 0.4:
                self.t += think_time(rng)
                self.page("/checkout", SITE + path)
                self.xhr("/api/v1/checkout", 201, rng.randint(300, 700), "/checkout", "POST")
                path = "/checkout/confirmation"
                self.t += rng.uniform(2, 6)
                self.page(path, SITE + "/checkout")
        else:
            path = catalog.page_path(product_id)
            status = catalog.status(product_id)
            self.page(path, referer, status)
            if status == 200:
                self.xhr(f"/api/v1/products/{product_id}", 200, rng.randint(1_500, 4_800), path)
                self.xhr(f"/api/v1/products/{product_id}/reviews?page=1", 200,
                         rng.randint(300, 6_000), path)
                self.images([product_id], 800, path)
                if rng.random() < 0.25:
                    self.t += rng.uniform(5, 40)
                    self.xhr("/api/v1/cart/items", 201, rng.randint(200, 400), path, "POST")
        return path

    def login(self, referer: str, failures: int) -> None:
        """Log in through the web form, which sends no HTTP user. A failure re-renders the form."""
        rng = self.rng
        self.page("/login", referer)
        for _ in range(failures):
            self.t += rng.uniform(6, 20)
            self.get("/login", 200, rng.randint(7_000, 7_400), SITE + "/login", 0.0, "POST")
        self.t += rng.uniform(6, 20)
        self.get("/login", 302, 0, SITE + "/login", 0.0, "POST")
        self.t += rng.uniform(0.2, 0.8)
        self.page("/account", SITE + "/login")
        self.t += think_time(rng)


def add_browsers(log: AccessLog, catalog: Catalog) -> None:
    """Add about eighty browser visits over the day. A few addresses come back later."""
    rng = actor_rng("browsers")
    addresses: list[str] = []
    for number in range(80):
        roll = rng.random()
        if addresses and roll < 0.12:
            ip = rng.choice(addresses)
        elif roll < 0.55:
            ip = ip4("198.51.100", 10 + number)
        elif roll < 0.85:
            ip = ip4("192.0.2", 100 + number)
        else:
            ip = f"2001:db8:1{rng.randint(0, 0xfff):03x}:{rng.randint(1, 0xffff):x}::{rng.randint(2, 0xfff):x}"
        addresses.append(ip)
        pages = 1 if rng.random() < 0.35 else rng.randint(2, 12)
        failures = -1
        if pages > 2 and rng.random() < 0.3:
            failures = rng.choices((0, 1, 2), weights=(8, 2, 1))[0]
        session = BrowserSession(log, rng, catalog, ip, rng.choice(BROWSER_AGENTS),
                                 session_start(rng))
        session.run(pages, failures)


def app_login(log: AccessLog, rng: random.Random, t: float, ip: str, agent: str, user: str,
              failures: int) -> float:
    """Log in with HTTP basic auth, failing ``failures`` times first; return the time after."""
    for _ in range(failures):
        log.add(t, ip, "POST", "/api/v1/auth/token", 401, 61, agent, user=user)
        t += rng.uniform(5, 25)
    log.add(t, ip, "POST", "/api/v1/auth/token", 200, rng.randint(410, 440), agent, user=user)
    return t + rng.uniform(0.5, 2)


def app_session(log: AccessLog, rng: random.Random, catalog: Catalog, ip: str, agent: str,
                t: float, login_failures: int = -1, user: str | None = None) -> None:
    """Add one mobile-app session, starting with a password login when ``login_failures`` >= 0."""
    if login_failures >= 0:
        t = app_login(log, rng, t, ip, agent, user or email(rng), login_failures)
    else:
        log.add(t, ip, "POST", "/api/v1/auth/refresh", 200, rng.randint(400, 430), agent)
        t += rng.uniform(0.3, 1.5)
    log.add(t, ip, "GET", "/api/v1/home", 200, rng.randint(8_000, 16_000), agent)
    for _ in range(rng.randint(1, 9)):
        t += think_time(rng) / 2
        if rng.random() < 0.3:
            category = rng.choice(CATEGORIES)
            log.add(t, ip, "GET", f"/api/v1/products?category={category}&page=1", 200,
                    rng.randint(6_000, 14_000), agent)
            continue
        product_id = catalog.popular(rng)
        status = catalog.status(product_id)
        log.add(t, ip, "GET", f"/api/v1/products/{product_id}", status,
                rng.randint(1_500, 4_800) if status == 200 else 48, agent)
        if status == 200 and rng.random() < 0.15:
            t += rng.uniform(3, 30)
            log.add(t, ip, "POST", "/api/v1/cart/items", 201, rng.randint(200, 400), agent)
    if rng.random() < 0.3:
        t += think_time(rng)
        log.add(t, ip, "GET", "/api/v1/cart", 200, rng.randint(400, 2_400), agent)


def add_mobile_app(log: AccessLog, catalog: Catalog) -> None:
    """Add about 110 app sessions, most of them through four carrier-grade NAT addresses."""
    rng = actor_rng("mobile")
    cgnat = [f"100.64.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(4)]
    for _ in range(110):
        roll = rng.random()
        if roll < 0.6:
            ip = rng.choice(cgnat)
        elif roll < 0.85:
            ip = f"2001:db8:4{rng.randint(0, 0xfff):03x}:{rng.randint(1, 0xffff):x}::{rng.randint(2, 0xfff):x}"
        else:
            ip = ip4("198.51.100", rng.randint(120, 199))
        agent = IOS_APP_AGENT if rng.random() < 0.55 else ANDROID_APP_AGENT
        failures = -1
        if rng.random() < 0.3:
            failures = rng.choices((0, 1, 2), weights=(10, 3, 1))[0]
        app_session(log, rng, catalog, ip, agent, session_start(rng), failures)


def add_api_clients(log: AccessLog) -> None:
    """Add customers' scripts that call the API with bearer tokens on a schedule."""
    rng = actor_rng("api-clients")
    reporting, agent = "192.0.2.44", "python-requests/2.32.3"
    for quarter in range(96):
        t = quarter * 900 + rng.uniform(2, 8)
        if quarter % 4 == 0:
            t = app_login(log, rng, t, reporting, agent, "svc-reporting", 0)
        since = (START + timedelta(seconds=quarter * 900 - 900)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for page in (1, 2):
            log.add(t, reporting, "GET", f"/api/v1/orders?created_after={since}&page={page}",
                    200, rng.randint(2_000, 30_000), agent)
            t += rng.uniform(0.3, 1.2)

    feed, agent = "2001:db8:2c0:15::10", "Go-http-client/2.0"
    for hour in range(24):
        t = hour * 3600 + 300 + rng.uniform(0, 5)
        since = (START + timedelta(hours=hour - 1)).strftime("%Y-%m-%dT%H:00:00Z")
        for page in range(1, rng.randint(2, 4)):
            log.add(t, feed, "GET", f"/api/v1/products?updated_since={since}&page={page}", 200,
                    rng.randint(5_000, 60_000), agent)
            t += rng.uniform(0.2, 0.6)


def add_partner(log: AccessLog) -> None:
    """Add the ERP partner's 20-minute full sync at noon, about one request per second.

    It is the busiest benign client of the day, so the request-flood threshold
    must sit well above its rate. Small delta syncs run at half past each hour.
    """
    rng = actor_rng("partner")
    ip, agent = "192.0.2.80", "AcmeERP-Sync/3.4.2 Go-http-client/1.1"

    def sync(t: float, end: float) -> None:
        t = app_login(log, rng, t, ip, agent, "partner-acme", 0)
        page = 0
        while t < end:
            roll = rng.random()
            if roll < 0.55:
                sku = f"SKU-{rng.randint(1001, 1960)}-{rng.choice('SMLX')}"
                log.add(t, ip, "PUT", f"/api/v1/inventory/{sku}", 204, 0, agent)
            elif roll < 0.85:
                page += 1
                log.add(t, ip, "GET", f"/api/v1/orders?status=paid&page={page}", 200,
                        rng.randint(8_000, 40_000), agent)
            else:
                log.add(t, ip, "GET", f"/api/v1/products?page={rng.randint(1, 10)}&per_page=100",
                        200, rng.randint(40_000, 90_000), agent)
            t += rng.uniform(0.85, 1.15)

    sync(12 * 3600 + 4, 12 * 3600 + 20 * 60)
    for hour in range(24):
        if hour != 12:
            start = hour * 3600 + 1800 + rng.uniform(0, 10)
            sync(start, start + rng.uniform(10, 20))


def add_crawlers(log: AccessLog, catalog: Catalog) -> None:
    """Add Googlebot and bingbot at polite rates, and a slow price-comparison crawler."""
    rng = actor_rng("crawlers")
    for ip, agent, gap in (("192.0.2.66", GOOGLEBOT_AGENT, (240, 720)),
                           ("192.0.2.67", GOOGLEBOT_MOBILE_AGENT, (600, 1800)),
                           ("198.51.100.207", BINGBOT_AGENT, (600, 1500))):
        t = rng.uniform(0, 600)
        next_robots = 0.0
        while t < DAY_SECONDS:
            if t >= next_robots:
                log.add(t, ip, "GET", "/robots.txt", 200, 412, agent)
                next_robots = t + 6 * 3600
                t += rng.uniform(1, 5)
                log.add(t, ip, "GET", "/sitemap.xml", 200, 88_310, agent)
            else:
                roll = rng.random()
                if roll < 0.7:
                    product_id = rng.choice(catalog.ids)
                    status = catalog.status(product_id)
                    path = catalog.page_path(product_id)
                elif roll < 0.9:
                    path, status = f"/c/{rng.choice(CATEGORIES)}", 200
                else:
                    path, status = rng.choice(("/", "/help/shipping", "/help/returns")), 200
                size = rng.randint(18_000, 64_000) if status == 200 else 6_214
                log.add(t, ip, "GET", path, status, size, agent)
            t += rng.uniform(*gap)

    # It reads one random product a minute through the public API for three hours.
    ip, agent = "192.0.2.150", "PriceRadarBot/2.1 (+https://priceradar.example/bot)"
    t = 9 * 3600 + rng.uniform(0, 60)
    while t < 12 * 3600:
        product_id = rng.choice(catalog.ids)
        status = catalog.status(product_id)
        log.add(t, ip, "GET", f"/api/v1/products/{product_id}", status,
                rng.randint(1_500, 4_800) if status == 200 else 48, agent)
        t += rng.uniform(45, 75)


def add_near_misses(log: AccessLog, catalog: Catalog) -> list[Actor]:
    """Add benign clients that come close to a rule's threshold, and return their labels."""
    rng = actor_rng("near-misses")
    actors = []

    ip = "198.51.100.31"
    app_session(log, rng, catalog, ip, IOS_APP_AGENT, 11 * 3600 + 1234, login_failures=3,
                user="maria.k@example.org")
    actors.append(Actor(ip, "password typo", "credential-stuffing",
                        "One user fails the API login three times, then succeeds."))

    # A job deployed with a rotated password retries every 20-40 s for 25 minutes.
    ip, agent = "192.0.2.60", "python-requests/2.28.1"
    t = 10 * 3600 + rng.uniform(0, 30)
    while t < 10 * 3600 + 25 * 60:
        log.add(t, ip, "POST", "/api/v1/auth/token", 401, 61, agent, user="svc-feed-export")
        t += rng.uniform(20, 40)
    app_login(log, rng, t + 600, ip, agent, "svc-feed-export", 0)
    actors.append(Actor(ip, "stale credentials", "credential-stuffing",
                        "About 50 failed logins in 25 minutes, all for one account."))

    actors.append(Actor("192.0.2.150", "slow crawler", "scraping",
                        "Price-comparison bot: one API product a minute for three hours."))
    actors.append(Actor("192.0.2.80", "busy partner", "request-flood",
                        "ERP sync at about one request per second for 20 minutes."))

    ip = "198.51.100.250"
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36"
    t = 22 * 3600 + 14 * 60 + rng.uniform(0, 60)
    log.add(t, ip, "GET", "/.env", 404, 153, agent)
    log.add(t + 1.4, ip, "GET", "/.git/config", 403, 153, agent)
    actors.append(Actor(ip, "drive-by probe", "sensitive-file-probe",
                        "Two sensitive paths, below the threshold of five."))

    # Staff on the office VPN try a WordPress URL out of habit, then the real admin.
    ip = "172.16.8.21"
    agent = BROWSER_AGENTS[2]
    t = 9 * 3600 + 12 * 60 + rng.uniform(0, 60)
    log.add(t, ip, "GET", "/wp-admin/", 404, 6_214, agent, protocol="HTTP/2.0")
    log.add(t + 9, ip, "GET", "/admin", 302, 0, agent, protocol="HTTP/2.0")
    log.add(t + 9.4, ip, "GET", "/admin/login", 200, 9_811, agent, referer="-", protocol="HTTP/2.0")
    actors.append(Actor(ip, "staff typo", "sensitive-file-probe",
                        "One request for /wp-admin/ from the office VPN."))

    # A script with a token lacking the reports scope: eight 403s, then a new token.
    ip, agent = "172.16.8.20", "curl/8.5.0"
    t = 14 * 3600 + 3 * 60 + rng.uniform(0, 60)
    for _ in range(8):
        log.add(t, ip, "GET", "/api/v1/admin/reports/daily?date=2026-11-02", 403, 74, agent)
        t += rng.uniform(10, 40)
    t = app_login(log, rng, t + 240, ip, agent, "ops-reports", 0)
    log.add(t, ip, "GET", "/api/v1/admin/reports/daily?date=2026-11-02", 200, 18_204, agent)
    actors.append(Actor(ip, "missing scope", "waf-blocks-repeated",
                        "Eight 403s within five minutes from a token without the right scope."))

    # Searches with quotes, SQL words and "<" in them.
    ip = "198.51.100.44"
    agent = BROWSER_AGENTS[0]
    t = 20 * 3600 + 5 * 60
    for term in TRICKY_SEARCH_TERMS:
        target = f"/search?q={quote_plus(term)}"
        log.add(t, ip, "GET", target, 200, rng.randint(18_000, 40_000), agent,
                referer=SITE + "/", protocol="HTTP/2.0")
        log.add(t + 0.6, ip, "GET", f"/api/v1/search?q={quote_plus(term)}", 200,
                rng.randint(900, 9_000), agent, referer=SITE + target, protocol="HTTP/2.0")
        t += rng.uniform(8, 30)
    actors.append(Actor(ip, "tricky searches", "url-injection",
                        "Searches such as men's boots, union jack cushion, i <3 ny mug, 50% off."))
    return actors


# --------------------------------------------------------------------------
# Attackers
# --------------------------------------------------------------------------

def add_credential_stuffing(log: AccessLog) -> Actor:
    """Add a client that tries 150 leaked accounts in six minutes, two of them successfully."""
    rng = actor_rng("credential-stuffing")
    ip, agent = "203.0.113.77", "okhttp/4.9.3"
    accounts: list[str] = []
    while len(accounts) < 150:
        account = email(rng)
        if account not in accounts:
            accounts.append(account)
    winners = {accounts[41], accounts[118]}
    t = 5 * 3600 + 41 * 60 + 20
    for account in accounts:
        if account in winners:
            log.add(t, ip, "POST", "/api/v1/auth/token", 200, rng.randint(410, 440), agent,
                    user=account)
            log.add(t + 0.8, ip, "GET", "/api/v1/me", 200, rng.randint(600, 900), agent)
            log.add(t + 1.5, ip, "GET", "/api/v1/account/payment-methods", 200,
                    rng.randint(300, 700), agent)
        else:
            log.add(t, ip, "POST", "/api/v1/auth/token", 401, 61, agent, user=account)
        t += rng.uniform(1.2, 3.4)
    return Actor(ip, "credential stuffing", "credential-stuffing",
                 "148 failed API logins over 148 accounts in about six minutes; two succeed.",
                 also=("credential-stuffing-slow", "login-failures-then-success"))


def add_scraper(log: AccessLog, catalog: Catalog) -> Actor:
    """Add an IPv6 client that reads product ids 1001-1480, one every 7-10 s, across a rotation."""
    rng = actor_rng("scraping")
    ip = "2001:db8:bad:1::17"
    agent = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/124.0.0.0 Safari/537.36")
    t = 7 * 3600 + 36 * 60 + 40
    log.add(t, ip, "GET", "/api/v1/products?page=1&per_page=20", 200, 11_204, agent)
    for product_id in range(1001, 1481):
        t += rng.uniform(7.0, 10.0)
        status = catalog.status(product_id)
        log.add(t, ip, "GET", f"/api/v1/products/{product_id}", status,
                rng.randint(1_500, 4_800) if status == 200 else 48, agent)
    return Actor(ip, "scraping", "scraping",
                 "480 product ids in sequence at one request per 7-10 s (below the flood rate).",
                 also=("scraping-catalogue-walk", "object-id-enumeration"))


def add_flood(log: AccessLog) -> Actor:
    """Add 2,000 requests in three and a half minutes, after which the upstream starts failing."""
    rng = actor_rng("request-flood")
    ip = "203.0.113.200"
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0"
    start = 15 * 3600 + 12 * 60
    words = ("shoes", "sale", "jacket", "boots", "gift")
    for t in sorted(start + rng.uniform(0, 210) for _ in range(2000)):
        roll = rng.random()
        if roll < 0.7:
            target = f"/api/v1/search?q={rng.choice(words)}&page={rng.randint(1, 50)}"
        elif roll < 0.9:
            target = "/"
        else:
            target = f"/c/{rng.choice(CATEGORIES)}"
        if t - start < 40:
            status = 200
        else:
            status = rng.choices((200, 502, 504, 499), weights=(6, 2, 1, 1))[0]
        size = {200: rng.randint(900, 30_000), 502: 157, 504: 167, 499: 0}[status]
        log.add(t, ip, "GET", target, status, size, agent)
    return Actor(ip, "request flood", "request-flood",
                 "2,000 requests in 210 s (about 9.5 per second).",
                 also=("expensive-endpoint-hammered",))


SENSITIVE_PROBES = (
    ("/.env", 404), ("/.env.local", 404), ("/.env.production", 404), ("/.env.bak", 404),
    ("/.git/config", 403), ("/.git/HEAD", 404), ("/.svn/entries", 404), ("/.DS_Store", 404),
    ("/.aws/credentials", 404), ("/.ssh/id_rsa", 404), ("/.htpasswd", 404),
    ("/.htaccess", 403), ("/.npmrc", 404), ("/.docker/config.json", 404),
    ("/.vscode/sftp.json", 404), ("/backup.zip", 404), ("/backup.tar.gz", 404),
    ("/db.sql", 404), ("/dump.sql.gz", 404), ("/site.tar.gz", 404), ("/www.zip", 404),
    ("/config.php.bak", 404), ("/config.php", 404), ("/wp-config.php", 404),
    ("/wp-config.php.bak", 404), ("/wp-admin/", 404), ("/wp-login.php", 404),
    ("/xmlrpc.php", 404), ("/phpmyadmin/", 404), ("/pma/", 404), ("/adminer.php", 404),
    ("/phpinfo.php", 404), ("/info.php", 404), ("/server-status", 403),
    ("/actuator/env", 404), ("/actuator/heapdump", 404), ("/web.config", 404),
    ("/appsettings.json", 404), ("/docker-compose.yml", 404), ("/index.php.bak", 404),
    ("/debug/pprof/", 404), ("/.well-known/security.txt", 200), ("/robots.txt", 200),
)


def add_sensitive_file_probe(log: AccessLog) -> Actor:
    """Add a scanner that requests 43 well-known paths (41 of them sensitive) in two minutes."""
    rng = actor_rng("sensitive-file-probe")
    ip = "203.0.113.45"
    agent = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/89.0.4389.90 Safari/537.36")
    t = 1 * 3600 + 47 * 60 + 3
    log.add(t, ip, "GET", "/", 200, 31_877, agent)
    for path, status in SENSITIVE_PROBES:
        t += rng.uniform(1.0, 3.5)
        size = {200: 412, 403: 153, 404: 6_214}[status]
        log.add(t, ip, "GET", path, status, size, agent)
    return Actor(ip, "sensitive-file probe", "sensitive-file-probe",
                 "Secrets, backups, VCS metadata and admin panels; mostly 404.")


# Injection payloads as they appear in the request line, with the status the
# shop returned. Plain, URL-encoded, double-encoded and raw forms are mixed,
# and nginx writes a raw double quote as \x22.
INJECTION_REQUESTS = (
    ("/api/v1/search?q=boots%27", 500),
    ("/api/v1/search?q=boots%27%20OR%201%3D1--", 200),
    ("/api/v1/search?q=boots%27%20AND%20%271%27%3D%271", 200),
    ("/api/v1/search?q=boots%27)%20OR%20(%271%27%3D%271", 200),
    ("/api/v1/search?q=%27%20UNION%20SELECT%20NULL,NULL,NULL--", 500),
    ("/api/v1/search?q=%27%20UNION%20ALL%20SELECT%20username,password_hash,NULL%20FROM%20users--", 500),
    ("/api/v1/search?q=boots%27%3B%20DROP%20TABLE%20orders--", 200),
    ("/api/v1/search?q=boots%27%20AND%20SLEEP(5)--%20-", 200),
    ("/api/v1/search?q=1%27%20AND%20(SELECT%201%20FROM%20pg_sleep(5))--", 500),
    ("/api/v1/search?q=%2527%2520OR%25201%253D1--", 200),
    ("/api/v1/search?q=%2527%2520UNION%2520SELECT%2520version()--", 200),
    ("/api/v1/products?category=shoes%27%20OR%20%27x%27%3D%27x", 400),
    ("/api/v1/products?category=shoes&sort=price%20UNION/**/SELECT/**/NULL,@@version--", 400),
    ("/api/v1/products?category=shoes&page=1%20AND%201%3D1", 400),
    ("/api/v1/products?category=shoes&page=-1+UNION+ALL+SELECT+NULL,table_name+FROM+information_schema.tables--", 403),
    ("/api/v1/orders?id=1%20OR%201%3D1", 401),
    ("/api/v1/products/1001%20AND%201%3D2", 404),
    ("/p/merino-beanie-1044?ref=1'+or+'1'='1", 200),
    ("/api/v1/search?q=1%27%20WAITFOR%20DELAY%20%270:0:5%27--", 200),
    ("/api/v1/search?q=extractvalue(1,concat(0x7e,version()))", 500),
    ("/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 200),
    ("/search?q=%3CScRiPt%3Ealert(document.cookie)%3C/sCrIpT%3E", 403),
    ("/search?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", 200),
    ("/search?q=%253Csvg%2520onload%253Dalert(1)%253E", 200),
    ("/search?q=%253Cscript%253Ealert(1)%253C%252Fscript%253E", 200),
    ("/search?q=\\x22><script>alert(1)</script>", 200),
    ("/search?q=javascript:alert(1)", 200),
    ("/search?q=%3Ciframe%20src%3Djavascript:alert(1)%3E", 403),
    ("/search?q=%3Cdetails%20open%20ontoggle%3Dprompt(1)%3E", 200),
    ("/api/v1/search?q=%3Cbody%20onload%3Dalert(1)%3E", 200),
    ("/p/%3Cscript%3Ealert(1)%3C/script%3E", 404),
    ("/static/..%2f..%2f..%2fetc%2fpasswd", 400),
    ("/static/..%252f..%252f..%252fetc%252fpasswd", 404),
    ("/static/%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd", 404),
    ("/static/%2e%2e/%2e%2e/%2e%2e/etc/shadow", 400),
    ("/static/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd", 400),
    ("/media/..%5c..%5c..%5cwindows%5cwin.ini", 400),
    ("/api/v1/files?name=../../../../etc/passwd", 404),
    ("/api/v1/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd%00.png", 404),
    ("/api/v1/files?name=....//....//....//etc/passwd", 404),
    ("/api/v1/files?name=%252e%252e%252f%252e%252e%252fproc%252fself%252fenviron", 404),
    ("/api/v1/files?name=php://filter/convert.base64-encode/resource=index", 404),
    ("/api/v1/export?file=file:///etc/hosts", 404),
    ("/static/..;/..;/admin", 400),
)


def add_injection(log: AccessLog) -> Actor:
    """Add a client that looks around, then sends SQLi, XSS and traversal payloads."""
    rng = actor_rng("url-injection")
    ip = "203.0.113.99"
    browser = BROWSER_AGENTS[6]
    sqlmap = "sqlmap/1.8.4#stable (https://sqlmap.org)"
    t = 13 * 3600 + 5 * 60 + 12
    log.add(t, ip, "GET", "/", 200, 31_877, browser, protocol="HTTP/2.0")
    log.add(t + 14, ip, "GET", "/search?q=boots", 200, 36_112, browser, protocol="HTTP/2.0")
    log.add(t + 15, ip, "GET", "/api/v1/search?q=boots", 200, 5_441, browser,
            referer=SITE + "/search?q=boots", protocol="HTTP/2.0")
    t += 60
    for target, status in INJECTION_REQUESTS:
        agent = sqlmap if target.startswith("/api/v1/search") and rng.random() < 0.6 else browser
        size = {200: rng.randint(300, 9_000), 400: 157, 401: 61, 403: 548, 404: 153,
                500: 177}[status]
        log.add(t, ip, "GET", target, status, size, agent)
        t += rng.uniform(4, 22)
    return Actor(ip, "injection attempts", "url-injection",
                 "SQL injection, XSS and path traversal in query strings and paths, "
                 "plain, URL-encoded and double-encoded.",
                 also=("injection-passed-waf", "scanner-user-agent"))


def add_waf_blocks(log: AccessLog) -> Actor:
    """Add a client whose request bodies the WAF keeps blocking, so its URLs look clean."""
    rng = actor_rng("waf-blocks-repeated")
    ip, agent = "203.0.113.150", "python-requests/2.31.0"
    t = 19 * 3600 + 22 * 60 + 5
    targets = (("POST", "/api/v1/cart/items"), ("POST", "/api/v1/reviews"),
               ("POST", "/api/v1/checkout"), ("PUT", "/api/v1/account/address"),
               ("POST", "/api/v1/graphql"), ("GET", "/api/v1/orders/58213"))
    blocked = 0
    while t < 19 * 3600 + 28 * 60 + 40:
        method, path = rng.choice(targets)
        if rng.random() < 0.9:
            log.add(t, ip, method, path, 403, 548, agent)
            blocked += 1
        else:
            log.add(t, ip, method, path, 400, 97, agent)
        t += rng.uniform(2, 7)
    return Actor(ip, "repeated WAF blocks", "waf-blocks-repeated",
                 f"{blocked} requests blocked with 403 in about six minutes; "
                 "the payloads are in bodies, so URLs look clean.")


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def iso(t: float) -> str:
    return (START + timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%SZ")


def yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Rules over all traffic (their alerts name no client) and the attack that
# must raise each of them.
TRAFFIC_ALERTS = (
    ("traffic-spike", "the request flood of 203.0.113.200 (15:12-15:15)"),
    ("server-errors-surge", "the 502 and 504 answers during the request flood"),
)


def attackers_yaml(attackers: list[Actor], near_misses: list[Actor],
                   lines: list[tuple[float, str]]) -> str:
    """Render attackers.yaml with first and last event time per client."""
    seen: dict[str, tuple[float, float, int]] = {}
    for t, line in lines:
        ip = line.split(" ", 1)[0]
        first, last, count = seen.get(ip, (t, t, 0))
        seen[ip] = (first, t, count + 1)

    out = [
        "# Generated by sample_logs/generate.py; edit the generator, not this file.",
        "# attackers: each must raise an alert for `rule` (and every rule in `also`).",
        "# near_misses: benign clients close to the threshold of `rule`; they must not alert.",
        "# traffic_alerts: rules over all traffic that must alert once, and why.",
        "attackers:",
    ]
    for actor in attackers:
        first, last, count = seen[actor.client_ip]
        out += [
            f"  - client_ip: {yaml_string(actor.client_ip)}",
            f"    kind: {actor.kind}",
            f"    rule: {actor.rule}",
            f"    also: [{', '.join(actor.also)}]",
            f"    first_seen: {yaml_string(iso(first))}",
            f"    last_seen: {yaml_string(iso(last))}",
            f"    requests: {count}",
            f"    note: {yaml_string(actor.note)}",
        ]
    out.append("near_misses:")
    for actor in near_misses:
        first, last, count = seen[actor.client_ip]
        out += [
            f"  - client_ip: {yaml_string(actor.client_ip)}",
            f"    kind: {actor.kind}",
            f"    near_rule: {actor.rule}",
            f"    first_seen: {yaml_string(iso(first))}",
            f"    last_seen: {yaml_string(iso(last))}",
            f"    requests: {count}",
            f"    note: {yaml_string(actor.note)}",
        ]
    out.append("traffic_alerts:")
    for rule, cause in TRAFFIC_ALERTS:
        out += [f"  - rule: {rule}", f"    cause: {yaml_string(cause)}"]
    return "\n".join(out) + "\n"


def build_day() -> tuple[list[tuple[float, str]], list[Actor], list[Actor]]:
    log = AccessLog()
    catalog = Catalog(actor_rng("catalog"))
    add_health_checks(log)
    add_browsers(log, catalog)
    add_mobile_app(log, catalog)
    add_api_clients(log)
    add_partner(log)
    add_crawlers(log, catalog)
    near_misses = add_near_misses(log, catalog)
    attackers = [
        add_sensitive_file_probe(log),
        add_flood(log),
        add_credential_stuffing(log),
        add_scraper(log, catalog),
        add_injection(log),
        add_waf_blocks(log),
    ]
    return log.sorted_lines(), attackers, near_misses


def write_outputs(directory: Path) -> dict[str, int]:
    """Write the three log parts and attackers.yaml, and return each part's line count."""
    lines, attackers, near_misses = build_day()
    parts: dict[str, list[str]] = {"access.log.2.gz": [], "access.log.1": [], "access.log": []}
    for t, line in lines:
        if t < ROTATIONS[0]:
            parts["access.log.2.gz"].append(line)
        elif t < ROTATIONS[1]:
            parts["access.log.1"].append(line)
        else:
            parts["access.log"].append(line)

    for name, part in parts.items():
        data = ("\n".join(part) + "\n").encode("ascii")
        if name.endswith(".gz"):
            # mtime=0 and no file name in the header keep the archive reproducible.
            data = gzip.compress(data, compresslevel=9, mtime=0)
        (directory / name).write_bytes(data)
    (directory / "attackers.yaml").write_text(attackers_yaml(attackers, near_misses, lines),
                                              encoding="ascii")
    return {name: len(part) for name, part in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="directory to write the logs and attackers.yaml into "
                             "(default: the directory of this script)")
    args = parser.parse_args()
    counts = write_outputs(args.out)
    for name, count in counts.items():
        print(f"{args.out / name}: {count} lines")


if __name__ == "__main__":
    main()
