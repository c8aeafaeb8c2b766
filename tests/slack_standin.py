"""A local stand-in for the Slack Web API and incoming webhooks, for tests.

It runs a real HTTP server on 127.0.0.1 (port chosen by the OS) in a thread
and implements the parts gatewatch uses: ``chat.postMessage``,
``conversations.history`` (with message metadata) and one incoming-webhook
path. It records every request and can be programmed to fail the next requests.

    with SlackStandin() as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
        client.chat_postMessage(channel="C0ALERTS", text="hi")
        assert slack.messages[0]["text"] == "hi"

Test modules import it as ``from slack_standin import SlackStandin``:
pytest's default ``prepend`` import mode puts ``tests/`` on ``sys.path``
because the folder has no ``__init__.py``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_PREFIX = "/api/"
DEFAULT_TOKEN = "xoxb-standin-token"
DEFAULT_WEBHOOK_PATH = "/services/T0STANDIN/B0STANDIN/standin-webhook-secret"
WEBHOOK_CHANNEL = "webhook"


@dataclass
class RecordedRequest:
    """One HTTP request the stand-in received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_body: bytes

    @property
    def api_method(self) -> str | None:
        """The Web API method name, such as ``chat.postMessage``, or None for other paths."""
        if self.path.startswith(API_PREFIX):
            return self.path[len(API_PREFIX) :]
        return None

    @property
    def params(self) -> dict[str, Any]:
        """Query string and body parameters merged, as Slack reads them."""
        merged: dict[str, Any] = dict(self.query)
        if isinstance(self.body, dict):
            merged.update(self.body)
        return merged


@dataclass
class Fault:
    """A programmed failure for the next ``count`` matching requests.

    ``path`` limits the fault to one path (such as ``/api/chat.postMessage``).
    With ``process_first`` the request is handled normally (a message is
    stored) and the fault's status and body are returned instead of the real
    response, which is how a timeout after delivery looks to a client.
    """

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    count: int = 1
    path: str | None = None
    process_first: bool = False
    # Seconds to wait before responding, to make a client time out.
    delay: float = 0.0


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true", "yes"}


class _Handler(BaseHTTPRequestHandler):
    server: _StandinServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; every request is in SlackStandin.requests

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers=dict(self.headers.items()),
            body=_parse_body(self.headers.get("Content-Type", ""), raw_body),
            raw_body=raw_body,
        )
        status, headers, body = self.server.standin.handle(request)
        payload = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        )
        content_type = "application/json; charset=utf-8" if not isinstance(body, (str, bytes)) else "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); the request is recorded


def _parse_body(content_type: str, raw_body: bytes) -> Any:
    if not raw_body:
        return None
    text = raw_body.decode("utf-8", errors="replace")
    if "application/json" in content_type:
        return json.loads(text)
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    return text


class _StandinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, standin: SlackStandin):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.standin = standin


class SlackStandin:
    """A Slack stand-in on 127.0.0.1; use it as a context manager.

    ``token`` is the only bot token accepted (None accepts any).
    ``channels`` limits the channels that exist (None: every channel
    exists); posting elsewhere returns ``channel_not_found``.
    """

    def __init__(
        self,
        token: str | None = DEFAULT_TOKEN,
        channels: set[str] | None = None,
        webhook_path: str = DEFAULT_WEBHOOK_PATH,
    ):
        self.token = token
        self.channels = channels
        self.webhook_path = webhook_path
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._messages: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._last_ts = 0.0
        self._server: _StandinServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> SlackStandin:
        self._server = _StandinServer(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "start the stand-in first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Web API base URL for ``WebClient(base_url=...)``, with the trailing slash it needs."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.webhook_path}"

    # -- inspection -------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, faulted ones included."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message stored so far, oldest first; webhook posts have channel ``webhook``."""
        with self._lock:
            return [dict(message) for message in self._messages]

    def requests_to(self, name: str) -> list[RecordedRequest]:
        """Requests for one API method (``chat.postMessage``) or path (the webhook path)."""
        return [request for request in self.requests if request.api_method == name or request.path == name]

    # -- programmed failures ----------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        process_first: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Respond to the next ``count`` matching requests with ``status`` and ``body``."""
        fault = Fault(
            status=status,
            body={"ok": False, "error": "internal_error"} if body is None else body,
            headers=dict(headers or {}),
            count=count,
            path=path,
            process_first=process_first,
            delay=delay,
        )
        with self._lock:
            self._faults.append(fault)

    def rate_limit_next(self, count: int = 1, retry_after: int = 1, path: str | None = None) -> None:
        """Respond to the next ``count`` matching requests with HTTP 429 and ``Retry-After``."""
        self.fail_next(
            count,
            status=429,
            body={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": str(retry_after)},
            path=path,
        )

    def time_out_next(self, delay: float, count: int = 1, path: str | None = None, process_first: bool = True) -> None:
        """Respond to the next ``count`` matching requests only after ``delay`` seconds.

        With ``process_first`` (the default) the message is stored first, as
        when Slack receives a post but the client gives up before the reply.
        """
        self.fail_next(count, status=200, body={"ok": False, "error": "late"}, path=path,
                       process_first=process_first, delay=delay)

    def error_next(self, error: str = "channel_not_found", count: int = 1, path: str | None = None) -> None:
        """Respond to the next ``count`` matching requests with HTTP 200 and ``{"ok": false, "error": ...}``."""
        self.fail_next(count, status=200, body={"ok": False, "error": error}, path=path)

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- request handling -------------------------------------------------

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        """Record ``request`` and return the status, extra headers and body of the response."""
        with self._lock:
            self._requests.append(request)
            fault = self._take_fault(request.path)
            if fault is None or fault.process_first:
                response = self._route(request)
        if fault is None:
            return response
        if fault.delay:
            time.sleep(fault.delay)
        return fault.status, fault.headers, fault.body

    def _route(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        if request.path == self.webhook_path:
            return self._webhook(request)
        if request.api_method is None:
            return 404, {}, "no_service"
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if request.api_method == "chat.postMessage":
            return self._post_message(request.params)
        if request.api_method == "conversations.history":
            return self._history(request.params)
        if request.api_method == "conversations.replies":
            return self._replies(request.params)
        if request.api_method == "chat.update":
            return self._update(request.params)
        return 200, {}, {"ok": False, "error": "unknown_method"}

    def _next_ts(self) -> str:
        ts = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = ts
        return f"{ts:.6f}"

    def _store(self, channel: str, params: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "message", "ts": self._next_ts(), "channel": channel}
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        for key in ("text", "blocks", "metadata"):
            value = params.get(key)
            if isinstance(value, str) and key in ("blocks", "metadata"):
                value = json.loads(value)
            if value is not None:
                message[key] = value
        self._messages.append(message)
        return message

    def _post_message(self, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        channel = params.get("channel")
        if not channel or (self.channels is not None and channel not in self.channels):
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return 200, {}, {"ok": False, "error": "no_text"}
        thread_ts = params.get("thread_ts")
        if thread_ts and not any(m["ts"] == str(thread_ts) and m["channel"] == channel for m in self._messages):
            return 200, {}, {"ok": False, "error": "thread_not_found"}
        message = self._store(channel, params)
        return 200, {}, {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _history(self, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        channel = params.get("channel")
        if not channel or (self.channels is not None and channel not in self.channels):
            return 200, {}, {"ok": False, "error": "channel_not_found"}
        oldest = float(params.get("oldest") or 0)
        limit = int(params.get("limit") or 100)
        offset = int(params.get("cursor") or 0)
        with_metadata = _truthy(params.get("include_all_metadata", False))

        # As in Slack, replies in a thread are not part of the channel history.
        matching = [
            m for m in self._messages
            if m["channel"] == channel and float(m["ts"]) > oldest and m.get("thread_ts", m["ts"]) == m["ts"]
        ]
        matching.sort(key=lambda m: float(m["ts"]), reverse=True)
        page = matching[offset : offset + limit]
        if not with_metadata:
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        has_more = offset + limit < len(matching)
        return 200, {}, {
            "ok": True,
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": str(offset + limit) if has_more else ""},
        }

    def _replies(self, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        channel = params.get("channel")
        parent = str(params.get("ts") or "")
        oldest = float(params.get("oldest") or 0)
        with_metadata = _truthy(params.get("include_all_metadata", False))
        thread = [
            m for m in self._messages
            if m["channel"] == channel and (m["ts"] == parent or m.get("thread_ts") == parent)
        ]
        if not thread:
            return 200, {}, {"ok": False, "error": "thread_not_found"}
        page = [m for m in thread if m["ts"] == parent or float(m["ts"]) > oldest]
        if not with_metadata:
            page = [{k: v for k, v in m.items() if k != "metadata"} for m in page]
        return 200, {}, {"ok": True, "messages": page, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _update(self, params: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        channel = params.get("channel")
        ts = str(params.get("ts") or "")
        for message in self._messages:
            if message["channel"] == channel and message["ts"] == ts:
                for key in ("text", "blocks"):
                    value = params.get(key)
                    if isinstance(value, str) and key == "blocks":
                        value = json.loads(value)
                    if value is not None:
                        message[key] = value
                message["edited"] = True
                return 200, {}, {"ok": True, "channel": channel, "ts": ts}
        return 200, {}, {"ok": False, "error": "message_not_found"}

    def thread_replies(self, parent_ts: str) -> list[dict[str, Any]]:
        """Messages posted as replies in the thread of ``parent_ts``, oldest first."""
        return [m for m in self.messages if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts]

    def _webhook(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        if not isinstance(request.body, dict):
            return 400, {}, "invalid_payload"
        if not request.body.get("text") and not request.body.get("blocks"):
            return 400, {}, "no_text"
        self._store(WEBHOOK_CHANNEL, request.body)
        return 200, {}, "ok"
