"""A seeded traffic generator: normal clients and one actor per attack kind.

Every actor's requests are planned up front from ``random.Random(seed)``,
so a seed always produces the same requests in the same order per actor.
The actors then run at the same time, each with its own threads and
keep-alive connections (``http.client``) to the gateway. A client stands
for the address it sends in ``X-Forwarded-For``; the gateway trusts that
header from 127.0.0.1.

``run_traffic`` returns the ground truth, with per actor its addresses,
user agents and the status codes it received. ``expected: now`` lists the
rules that must alert on the actor, and ``allowed`` the rules that may also
alert on it, each with the reason. ``expected: later`` marks an attack that
the current rule pack cannot catch yet, and ``expected: never`` a normal
client that no rule may flag. ``formats`` limits an actor's expectation to
the access log formats that carry what its rules read. In the other formats
the actor counts as ``later``, for the reason in ``other_formats``.
"""

from __future__ import annotations

import base64
import http.client
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

from lab.gateway import LAB_HOST
from lab.upstream import ACCOUNTS, CATALOGUE_SIZE, token_for

DEFAULT_SEED = 7
# Upper bound on one generator run; actors stop sending when it passes.
DEFAULT_MAX_SECONDS = 60.0
REQUEST_TIMEOUT = 10.0

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15"
MOBILE_APP = "ShopApp/5.12.0 (Android 14; SM-S918B; build:5120) okhttp/4.12.0"
SCRIPT = "python-requests/2.31.0"
PROXY_POOL_TOOL = "python-httpx/0.27.0"

# Search terms of normal shoppers, with apostrophes, "<" and SQL words that
# neither CRS (paranoia level 1) nor the url-injection rule may flag.
SEARCH_TERMS = [
    "mug", "boots", "men's boots", "rock 'n' roll tote", "i <3 ny mug", "union jack scarf",
    "select fit fleece", "black & white print", "salt and pepper grinder", "kettle", "lamp",
]

# Payloads that CRS 3.3.4 blocks at paranoia level 1 (rule 949110), each
# also matched by the url-injection rule.
BLOCKED_PAYLOADS = [
    "/api/v1/search?q=" + quote_plus("' OR 1=1--"),
    "/api/v1/search?q=" + quote_plus("<script>alert(1)</script>"),
    "/api/v1/products/1?ref=../../etc/passwd",
    "/api/v1/search?q=" + quote_plus("1 UNION SELECT password FROM users"),
    "/api/v1/search?q=" + quote_plus("x' or 'a'='a"),
    "/api/v1/search?q=" + quote_plus("1' and sleep(5)#"),
    "/api/v1/search?q=" + quote_plus("') or ('x'='x"),
    "/api/v1/search?q=" + quote_plus("1' or true--"),
    "/api/v1/search?q=" + quote_plus("<details open ontoggle=x>"),
    "/api/v1/search?q=" + quote_plus("javascript:void(0)"),
    "/api/v1/search?q=%253Cscript%253E",
    "/api/v1/search?q=%2527+or+1%253D1--",
    "/api/v1/products/7?f=..%5C..%5Cwin.ini",
    "/api/v1/search?q=" + quote_plus("benchmark(1000000,md5(1))"),
    "/api/v1/search?q=" + quote_plus("x' xor 1=1"),
    "/api/v1/search?q=information_schema.tables",
    "/api/v1/search?q=" + quote_plus("<style>"),
    "/api/v1/search?q=document.cookie",
    "/api/v1/search?q=" + quote_plus("1')--"),
    "/api/v1/search?q=" + quote_plus("x' or null is null"),
    "/api/v1/search?q=" + quote_plus("admin'--"),
    "/api/v1/products/%c0%ae%c0%ae/%c0%ae%c0%ae/etc",
]

# Payloads that CRS 3.3.4 lets through at paranoia level 1 and that the
# url-injection rule matches: a quote followed by a statement terminator or
# a comment.
PASSING_PAYLOADS = [
    "/api/v1/search?q=" + quote_plus("x';--"),
    "/api/v1/search?q=" + quote_plus("'#"),
    "/api/v1/search?q=" + quote_plus("';"),
    "/api/v1/products/3?sort=" + quote_plus("name';--"),
    "/api/v1/search?q=" + quote_plus("x' # comment"),
]

# Paths a wordlist scanner requests; the sensitive-file-probe rule matches each.
SENSITIVE_PATHS = [
    "/.env", "/.git/config", "/wp-admin/", "/phpmyadmin/", "/backup.zip", "/db.sql",
    "/.aws/credentials", "/server-status", "/actuator/env", "/config.php.bak", "/.htpasswd",
    "/wp-login.php", "/.ssh/id_rsa", "/docker-compose.yml", "/.env.production", "/site.tar.gz",
]


@dataclass
class PlannedRequest:
    method: str
    target: str
    address: str
    user_agent: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Actor:
    """One client (or one attacker with several addresses) and its planned requests."""

    name: str
    kind: str
    # "now": the current rule pack must alert with every rule in `rules`;
    # "later": an attack the current pack cannot catch yet; "never": a normal client.
    expected: str
    rules: list[str]
    note: str
    requests: list[PlannedRequest]
    # Rules that may alert on this actor besides `rules`, each with the reason.
    allowed: dict[str, str] = field(default_factory=dict)
    # Pause after each request, per thread, in seconds.
    pause: float = 0.0
    threads: int = 1
    # "all": CRS must block every request (rule 949110); "none": no request.
    waf_blocks: str | None = None
    # Access log formats in which `expected` and `rules` hold; None means every format.
    # In any other format the actor counts as "later", for the reason in `other_formats`.
    formats: tuple[str, ...] | None = None
    other_formats: str = ""
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    @property
    def addresses(self) -> list[str]:
        return sorted({request.address for request in self.requests}, key=_address_key)

    @property
    def user_agents(self) -> list[str]:
        return sorted({request.user_agent for request in self.requests})

    def ground_truth(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "expected": self.expected,
            "rules": list(self.rules),
            "allowed": dict(self.allowed),
            "addresses": self.addresses,
            "user_agents": self.user_agents,
            "planned": len(self.requests),
            "sent": sum(self.statuses.values()) + sum(self.errors.values()),
            "statuses": {int(status): count for status, count in sorted(self.statuses.items())},
            "note": self.note,
        }
        if self.waf_blocks is not None:
            entry["waf_blocks"] = self.waf_blocks
        if self.formats is not None:
            entry["formats"] = list(self.formats)
            entry["other_formats"] = self.other_formats
        if self.errors:
            entry["errors"] = dict(self.errors)
        return entry


def expectation(actor: dict[str, Any], access_format: str) -> tuple[str, list[str]]:
    """Return what the ground truth ``actor`` expects, and which rules, when ``access_format`` is ingested."""
    formats = actor.get("formats")
    if formats is not None and access_format not in formats:
        return "later", []
    return actor["expected"], list(actor["rules"])


def _address_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _login(address: str, agent: str, user: str, password: str) -> PlannedRequest:
    return PlannedRequest(
        "POST", "/api/v1/auth/token", address, agent,
        headers={"Authorization": _basic(user, password), "Content-Type": "application/x-www-form-urlencoded"},
        body=b"grant_type=password",
    )


def _orders(address: str, agent: str, user: str, token_user: str | None = None) -> PlannedRequest:
    token = token_for(token_user or user)
    return PlannedRequest("GET", f"/api/v1/users/{user}/orders", address, agent, headers={"Authorization": f"Bearer {token}"})


def _get(address: str, agent: str, target: str, **headers: str) -> PlannedRequest:
    return PlannedRequest("GET", target, address, agent, headers=dict(headers))


def _leaked_accounts(rng: random.Random, count: int, prefix: str) -> list[str]:
    return [f"{prefix}{rng.randrange(10_000, 99_999)}" for _ in range(count)]


def plan_actors(seed: int = DEFAULT_SEED) -> list[Actor]:
    """Plan every actor's requests from ``seed``."""
    rng = random.Random(seed)
    return [*_normal_actors(rng), *_attackers(rng)]


def _browser_visit(rng: random.Random, address: str, agent: str) -> list[PlannedRequest]:
    term = rng.choice(SEARCH_TERMS)
    visit = [
        _get(address, agent, "/"),
        _get(address, agent, "/static/app.js", Referer=f"http://{LAB_HOST}/"),
        _get(address, agent, f"/search?q={quote_plus(term)}"),
        _get(address, agent, f"/api/v1/search?q={quote_plus(term)}"),
    ]
    for _ in range(rng.randint(1, 3)):
        visit.append(_get(address, agent, f"/api/v1/products/{rng.randint(1, CATALOGUE_SIZE)}"))
    return visit


def _normal_actors(rng: random.Random) -> list[Actor]:
    actors = []
    shoppers = [("alice", FIREFOX), ("bob", CHROME), ("carol", SAFARI), ("dana", CHROME), ("erin", FIREFOX)]
    for number, (user, agent) in enumerate(shoppers, start=1):
        address = f"198.51.100.{10 + number}"
        requests: list[PlannedRequest] = []
        for _ in range(rng.randint(4, 6)):
            requests.extend(_browser_visit(rng, address, agent))
        if number == 2:
            # One mistyped password before the right one.
            requests.append(_login(address, agent, user, "wrong-password"))
        requests.append(_login(address, agent, user, ACCOUNTS[user]))
        requests.extend(_orders(address, agent, user) for _ in range(rng.randint(1, 3)))
        allowed = {}
        if user == "dana":
            allowed["token-many-addresses"] = ("token-replay uses her token, and the alert names the token, so it "
                                               "belongs to every actor that sent it")
        actors.append(Actor(f"shopper-{user}", "browser", "never", [], f"{user} browses, searches and checks orders.",
                            requests, pause=0.05, allowed=allowed))

    address = "198.51.100.20"
    app = [_login(address, MOBILE_APP, "frank", ACCOUNTS["frank"])]
    for _ in range(30):
        choice = rng.random()
        if choice < 0.4:
            app.append(_get(address, MOBILE_APP, f"/api/v1/products/{rng.randint(1, CATALOGUE_SIZE)}"))
        elif choice < 0.7:
            app.append(_get(address, MOBILE_APP, f"/api/v1/search?q={quote_plus(rng.choice(SEARCH_TERMS))}"))
        else:
            app.append(_orders(address, MOBILE_APP, "frank"))
    actors.append(Actor("mobile-app", "api client", "never", [], "A phone app signed in as frank.", app, pause=0.05))

    # The partner carries 120 of the shop's products and reads them in the
    # order of its own item list, which has nothing to do with the shop's ids.
    # NOTE: a job that reads ids in ascending order raises object-id-enumeration,
    # a false positive that rule documents; allow-list such a job's address.
    address = "198.51.100.30"
    agent = "acme-erp-sync/2.4"
    carried = rng.sample(range(1, CATALOGUE_SIZE + 1), 120)
    sync = [_get(address, agent, f"/api/v1/products/{product}") for product in carried]
    actors.append(
        Actor("partner-sync", "api client", "never", [],
              "A partner reads the 120 products it carries, in its own item order: below the scraping "
              "threshold of 150 distinct products.", sync, pause=0.01)
    )

    address = "198.51.100.40"
    office = []
    for _ in range(60):
        office.extend(_browser_visit(rng, address, rng.choice([FIREFOX, CHROME, SAFARI])))
    actors.append(
        Actor("office-nat", "browser", "never", [],
              "Many office browsers behind one NAT address, well below the flood threshold.", office[:400],
              pause=0.01, threads=2)
    )

    probe = [_get("192.0.2.10", "kube-probe/1.29", "/healthz") for _ in range(40)]
    actors.append(Actor("health-check", "api client", "never", [], "A health probe every 0.3 s.", probe, pause=0.3))
    return actors


def _attackers(rng: random.Random) -> list[Actor]:
    actors = []

    address = "203.0.113.10"
    accounts = _leaked_accounts(rng, 39, "user")
    stuffing = [_login(address, SCRIPT, user, f"Leaked-{rng.randrange(1000, 9999)}") for user in accounts]
    # erin's leaked password works on the 36th attempt. Two connections with
    # a 0.1 s pause send at most 20 logins a second, so at least 15 failures
    # fall in an earlier second than the success, also in logs that keep
    # whole seconds only.
    stuffing.insert(35, _login(address, SCRIPT, "erin", ACCOUNTS["erin"]))
    actors.append(
        Actor("stuffing-fast", "credential stuffing (fast)", "now",
              ["credential-stuffing", "credential-stuffing-slow", "login-failures-then-success"],
              "40 logins over 40 accounts from one address in about 2 s; the 36th succeeds (erin). "
              "The hourly rule counts the same failures.", stuffing, pause=0.1, threads=2)
    )

    address = "203.0.113.11"
    slow = [_login(address, SCRIPT, user, "Summer2026!") for user in _leaked_accounts(rng, 36, "member")]
    actors.append(
        Actor("stuffing-slow", "credential stuffing (slow)", "now", ["credential-stuffing-slow"],
              "36 logins over 36 accounts: an hour's worth for the hourly rule, sent one per 0.3 s.",
              slow, pause=0.3,
              allowed={"credential-stuffing": "the lab sends the hour's attempts within seconds, so the "
                                              "10-minute window sees them all"})
    )

    # A rented proxy pool in one provider's /24, with its own tool.
    distributed = []
    for index, user in enumerate(_leaked_accounts(rng, 48, "client")):
        distributed.append(_login(f"198.18.7.{100 + index // 2}", PROXY_POOL_TOOL, user, "Winter2025!"))
    actors.append(
        Actor("stuffing-distributed", "credential stuffing (distributed)", "now",
              ["credential-stuffing-network", "password-spraying-user-agent"],
              "48 logins over 48 accounts from 24 addresses of 198.18.7.0/24, two each, one user agent.",
              distributed, pause=0.05, threads=2)
    )

    address = "203.0.113.20"
    agent = "Mozilla/5.0 (compatible; PriceBot/1.3)"
    scrape = [_get(address, agent, f"/api/v1/products/{product}") for product in range(1, 201)]
    actors.append(
        Actor("scraper", "scraping", "now", ["scraping", "object-id-enumeration"],
              f"Products 1 to 200 in order; ids above {CATALOGUE_SIZE} return 404.", scrape)
    )

    address = "203.0.113.30"
    flood = []
    for _ in range(1200):
        if rng.random() < 0.8:
            flood.append(_get(address, SCRIPT, f"/api/v1/search?q={quote_plus(rng.choice(SEARCH_TERMS))}"))
        else:
            flood.append(_get(address, SCRIPT, "/"))
    actors.append(
        Actor("flood", "request flood", "now", ["request-flood", "expensive-endpoint-hammered"],
              "1,200 requests as fast as four connections allow, 80% of them searches.", flood, threads=4)
    )

    # token-many-addresses needs one credential on at least 10 addresses within an hour.
    token = [_orders(f"203.0.113.{40 + index % 10}", SCRIPT, "dana") for index in range(20)]
    actors.append(
        Actor("token-replay", "token used from many addresses", "now", ["token-many-addresses"],
              "dana's bearer token used from ten addresses besides her own, twice from each.", token, pause=0.1,
              formats=("nginx_json",),
              other_formats="the combined log carries no credential, and the audit log records only 5xx and "
                            "4xx answers other than 404, while these requests succeed")
    )

    address = "203.0.113.50"
    agent = "Mozilla/5.0 (X11; Linux x86_64) sqlprobe/0.9"
    blocked = [_get(address, agent, target) for target in BLOCKED_PAYLOADS]
    blocked += [_get(address, agent, rng.choice(BLOCKED_PAYLOADS)) for _ in range(3)]
    actors.append(
        Actor("injection-blocked", "injection (blocked by CRS)", "now", ["url-injection", "waf-blocks-repeated"],
              "25 injection payloads in the URL, each blocked by CRS.", blocked, pause=0.02, waf_blocks="all")
    )

    address = "203.0.113.51"
    passing = [_get(address, FIREFOX, target) for target in PASSING_PAYLOADS]
    actors.append(
        Actor("injection-passing", "injection (passed by CRS)", "now", ["url-injection", "injection-passed-waf"],
              "Quote-and-comment payloads that CRS lets through at paranoia level 1.", passing,
              pause=0.1, waf_blocks="none")
    )

    address = "203.0.113.60"
    scanner = [_get(address, "curl/8.5.0", path) for path in SENSITIVE_PATHS]
    actors.append(
        Actor("scanner", "sensitive-file scanner", "now", ["sensitive-file-probe"],
              "16 secrets, backups and admin panels; CRS blocks some, the rest are 404.", scanner, pause=0.05)
    )
    return actors


class _Gateway:
    """Sends planned requests over one keep-alive connection, reconnecting after errors."""

    def __init__(self, port: int):
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def send(self, request: PlannedRequest) -> int:
        headers = {
            "Host": LAB_HOST,
            "User-Agent": request.user_agent,
            "Accept": "*/*",
            "X-Forwarded-For": request.address,
            **request.headers,
        }
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.connection.request(request.method, request.target, body=request.body, headers=headers)
                response = self.connection.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # nginx closed an idle keep-alive connection; one retry on a new one.
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _run_actor_thread(actor: Actor, work: queue.SimpleQueue, port: int, deadline: float, lock: threading.Lock) -> None:
    gateway = _Gateway(port)
    try:
        while time.monotonic() < deadline:
            try:
                request = work.get_nowait()
            except queue.Empty:
                return
            try:
                status = gateway.send(request)
            except OSError as error:
                with lock:
                    actor.errors[type(error).__name__] += 1
                continue
            with lock:
                actor.statuses[status] += 1
            if actor.pause:
                time.sleep(actor.pause)
    finally:
        gateway.close()


def run_traffic(port: int, seed: int = DEFAULT_SEED, max_seconds: float = DEFAULT_MAX_SECONDS) -> dict[str, Any]:
    """Send every actor's requests to the gateway on 127.0.0.1:``port``; return the ground truth."""
    actors = plan_actors(seed)
    started = datetime.now(timezone.utc)
    deadline = time.monotonic() + max_seconds
    lock = threading.Lock()
    threads = []
    for actor in actors:
        work: queue.SimpleQueue = queue.SimpleQueue()
        for request in actor.requests:
            work.put(request)
        for number in range(actor.threads):
            thread = threading.Thread(
                target=_run_actor_thread, args=(actor, work, port, deadline, lock),
                name=f"lab-{actor.name}-{number}", daemon=True,
            )
            threads.append(thread)
            thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT)
    finished = datetime.now(timezone.utc)
    return {
        "seed": seed,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "timed_out": time.monotonic() >= deadline,
        "actors": [actor.ground_truth() for actor in actors],
    }
