"""Start and stop the lab's processes: the shop API and nginx in front of it.

``LabStack`` is a context manager. Each process runs in its own process
group, and leaving the ``with`` block (normally or through an exception)
sends SIGTERM to each group, then SIGKILL to any group still alive after a
few seconds.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab.gateway import LAB_HOST, GatewayFiles, GatewayInstall, check_config, find_install, nginx_command, render

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, name: str) -> None:
    """Stop ``process`` and its children: SIGTERM to its group, then SIGKILL after STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(STOP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        logger.warning("%s (pid %d) did not stop on SIGTERM within %.0f s; sending SIGKILL", name, process.pid, STOP_TIMEOUT)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(STOP_TIMEOUT)


class LabStack:
    """The shop API and nginx with ModSecurity and CRS, both on 127.0.0.1.

    ``root`` is the run folder: the rendered configs, nginx's logs and the
    API's stderr go there.
    """

    def __init__(self, root: Path, install: GatewayInstall | None = None):
        self.root = root.resolve()
        self.install = install or find_install()
        self.files: GatewayFiles | None = None
        self.port: int | None = None
        self.upstream_port: int | None = None
        self._processes: list[tuple[str, subprocess.Popen]] = []
        # Every process started, kept after stop() so callers can check that each exited.
        self.started: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> LabStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.upstream_port = self._start_upstream()
        self.port = free_port()
        self.files = render(self.install, self.root / "gateway", self.port, self.upstream_port)
        check_config(self.install, self.files)
        stderr = open(self.files.root / "nginx.stderr", "wb")
        try:
            process = subprocess.Popen(
                nginx_command(self.install, self.files),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            stderr.close()
        self._track("nginx", process)
        self._wait_until_ready(process)

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        while self._processes:
            name, process = self._processes.pop()
            stop_process_group(process, name)

    def _track(self, name: str, process: subprocess.Popen) -> None:
        self._processes.append((name, process))
        self.started.append((name, process))

    def _start_upstream(self) -> int:
        stderr = open(self.root / "upstream.stderr", "wb")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "lab.upstream", "--port", "0"],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            stderr.close()
        self._track("shop API", process)
        # For stopping by hand after the lab itself was killed with SIGKILL.
        (self.root / "upstream.pid").write_text(f"{process.pid}\n")
        assert process.stdout is not None
        first_line = process.stdout.readline().decode().strip()
        process.stdout.close()
        if not first_line.startswith("listening on "):
            raise RuntimeError(
                f"the shop API did not start (first output line {first_line!r}); see {self.root / 'upstream.stderr'}"
            )
        return int(first_line.removeprefix("listening on "))

    def _wait_until_ready(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with status {process.returncode} at start; see {self.files.error_log} "
                    f"and {self.files.root / 'nginx.stderr'}"
                )
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz", headers={"Host": LAB_HOST, "User-Agent": "lab-startup-check"})
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return
                last_error = f"HTTP {status}"
            except OSError as error:
                last_error = str(error)
            time.sleep(0.1)
        raise RuntimeError(f"nginx did not return 200 for /healthz within {STARTUP_TIMEOUT:.0f} s ({last_error})")
