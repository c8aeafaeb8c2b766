#!/usr/bin/env python3
"""Run a command and write its peak RSS and CPU seconds as JSON, like GNU time's %M, %U and %S.

    python bench/maxrss.py OUTPUT.json COMMAND [ARGS...]

The figures come from ``os.wait4``. Linux starts a child's peak RSS at the
RSS of the process that forked it, so this script imports nothing heavy:
its own few MiB are the floor of every figure. Exits with the command's
exit code.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: maxrss.py OUTPUT.json COMMAND [ARGS...]")
    output, command = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(output, "w") as handle:
        json.dump({
            "peak_rss_bytes": usage.ru_maxrss * 1024,
            "user_seconds": usage.ru_utime,
            "system_seconds": usage.ru_stime,
            "exit_code": code,
        }, handle)
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
