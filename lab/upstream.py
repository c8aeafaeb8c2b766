"""The small shop API that the lab gateway proxies to.

Run as ``python -m lab.upstream``: it binds 127.0.0.1 on a port chosen by
the OS and prints ``listening on <port>`` on the first line of stdout, so the
process that started it can read the port. Endpoints:

- ``POST /api/v1/auth/token`` with HTTP basic auth: 200 and a bearer token,
  or 401 on bad credentials.
- ``GET /api/v1/products/<id>``: 200 for ids 1 to ``CATALOGUE_SIZE``, else 404.
- ``GET /api/v1/search?q=<text>``: 200 with matching product names.
- ``GET /api/v1/users/<name>/orders`` with ``Authorization: Bearer <token>``:
  200 for the token's own user, 403 for another user, 401 without a valid token.
- ``GET /healthz``: 200.
- ``GET /``, ``GET /search`` and ``GET /static/app.js``: small pages for browsers.

Every other path returns 404. Tokens and passwords are fixed by the lab
(``ACCOUNTS``), so the traffic generator can plan which logins succeed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CATALOGUE_SIZE = 180
PRODUCT_WORDS = ["mug", "boots", "scarf", "lamp", "fleece", "board", "print", "grinder", "kettle", "tote"]
# user name -> password. The traffic generator logs in with these.
ACCOUNTS = {
    "alice": "correct-horse-1",
    "bob": "battery-staple-2",
    "carol": "tr0ub4dor-3",
    "dana": "hunter-2-but-longer",
    "erin": "opensesame-5",
    "frank": "swordfish-6",
}


def token_for(user: str) -> str:
    """Return the bearer token the API issues to ``user`` (fixed, so tests can predict it)."""
    digest = hashlib.sha256(f"lab-token:{user}".encode()).hexdigest()[:32]
    return f"tok_{digest}"


_USERS_BY_TOKEN = {token_for(user): user for user in ACCOUNTS}


def product(product_id: int) -> dict:
    word = PRODUCT_WORDS[product_id % len(PRODUCT_WORDS)]
    return {"id": product_id, "name": f"{word} no. {product_id}", "price_cents": 500 + (product_id * 37) % 9000}


class ShopHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-shop/1"
    # Headers and body go out in separate writes; without TCP_NODELAY each
    # response waits about 40 ms for the proxy's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # the gateway writes the access logs

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query)
        if path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path in ("/", "/search"):
            self._send_text(200, "<!doctype html><title>lab shop</title><script src=/static/app.js></script>", "text/html")
        elif path == "/static/app.js":
            self._send_text(200, "console.log('lab shop');\n", "application/javascript")
        elif path == "/api/v1/search":
            self._search(query.get("q", [""])[0])
        elif path.startswith("/api/v1/products/"):
            self._product(path.removeprefix("/api/v1/products/"))
        elif path.startswith("/api/v1/users/") and path.endswith("/orders"):
            self._orders(path.removeprefix("/api/v1/users/").removesuffix("/orders"))
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if urlsplit(self.path).path == "/api/v1/auth/token":
            self._login()
        else:
            self._send_json(404, {"error": "not found"})

    def _login(self) -> None:
        user, password = _basic_credentials(self.headers.get("Authorization", ""))
        if user is None or ACCOUNTS.get(user) != password:
            self._send_json(401, {"error": "invalid credentials"})
            return
        self._send_json(200, {"access_token": token_for(user), "token_type": "Bearer"})

    def _product(self, text: str) -> None:
        if not text.isdigit() or not 1 <= int(text) <= CATALOGUE_SIZE:
            self._send_json(404, {"error": "no such product"})
            return
        self._send_json(200, product(int(text)))

    def _search(self, text: str) -> None:
        words = text.lower().split()
        hits = [product(i) for i in range(1, CATALOGUE_SIZE + 1) if any(w in product(i)["name"] for w in words)]
        self._send_json(200, {"query": text, "results": hits[:10]})

    def _orders(self, user: str) -> None:
        header = self.headers.get("Authorization", "")
        owner = _USERS_BY_TOKEN.get(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None
        if owner is None:
            self._send_json(401, {"error": "missing or invalid bearer token"})
        elif owner != user:
            self._send_json(403, {"error": "token belongs to another user"})
        else:
            self._send_json(200, {"user": user, "orders": [{"id": 1000 + len(user), "total_cents": 4200}]})

    def _send_json(self, status: int, body: dict) -> None:
        self._send_text(status, json.dumps(body), "application/json")

    def _send_text(self, status: int, text: str, content_type: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    if not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header.removeprefix("Basic ").strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None, None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else (None, None)


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the lab shop API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 lets the OS choose a free one")
    args = parser.parse_args(argv)
    server = ShopServer(("127.0.0.1", args.port), ShopHandler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
