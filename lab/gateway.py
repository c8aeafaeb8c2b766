"""nginx with ModSecurity v3 and the OWASP Core Rule Set, rendered into a folder.

The files come from the Debian 12 packages ``nginx`` (1.22.1),
``libnginx-mod-http-modsecurity`` (1.0.3, on libmodsecurity 3.0.9) and
``modsecurity-crs`` (3.3.4). Nothing under /etc/nginx is changed: the lab
writes its own ``nginx.conf`` and ``modsecurity.conf`` into a run folder and
starts nginx with ``-p <folder> -c <folder>/nginx.conf``.

Facts about these versions that the config relies on:

- Debian's /etc/nginx/modsecurity.conf sets ``SecRuleEngine DetectionOnly``
  and ``SecStatusEngine On``, so the lab writes its own ModSecurity config
  with ``SecRuleEngine On`` (blocking) and the status engine off.
- ModSecurity 3.0.9 rejects ``IncludeOptional``, which the package's
  ``owasp-crs.load`` uses, so every CRS file is included by absolute path.
- ModSecurity resolves relative paths against its own working folder, not
  nginx's prefix, so every path in modsecurity.conf is absolute.
- CRS runs in anomaly scoring mode: rule 949110 blocks a request whose
  inbound score reaches the threshold (5 at paranoia level 1). Other rules
  also return 403, so CRS blocks are counted by rule 949110.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE_LOAD_FILES = (
    Path("/usr/share/nginx/modules-available/mod-http-modsecurity.conf"),
    Path("/etc/nginx/modules-available/mod-http-modsecurity.conf"),
)
MODULE_FOLDERS = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))
MODULE_NAME = "ngx_http_modsecurity_module.so"
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_BEFORE = Path("/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf")
CRS_AFTER = Path("/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
UNICODE_MAPPING = Path("/etc/nginx/unicode.mapping")

# The anomaly-scoring rule of CRS 3.x that blocks a request.
CRS_BLOCKING_RULE = "949110"

# Host header the lab clients send. CRS rule 920350 scores a numeric Host.
LAB_HOST = "shop.lab.test"


class GatewayMissing(Exception):
    """nginx, the ModSecurity module or the Core Rule Set is not installed."""


@dataclass(frozen=True)
class GatewayInstall:
    """Paths of the installed nginx binary, ModSecurity module and CRS files."""

    nginx: Path
    module: Path
    crs_files: tuple[Path, ...]


@dataclass(frozen=True)
class GatewayFiles:
    """The files of one rendered gateway: config, pid file and the three logs."""

    root: Path
    nginx_conf: Path
    modsecurity_conf: Path
    pid_file: Path
    error_log: Path
    access_log: Path
    json_log: Path
    audit_log: Path


def find_install() -> GatewayInstall:
    """Locate nginx, the ModSecurity module and the CRS files; raise GatewayMissing with the fix."""
    install_hint = (
        "install the lab's packages with `apt-get install -y --no-install-recommends nginx "
        "libnginx-mod-http-modsecurity modsecurity-crs` (Debian 12)"
    )
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if nginx is None:
        raise GatewayMissing(f"nginx not found on PATH or in /usr/sbin; {install_hint}")
    module = _find_module()
    if module is None:
        raise GatewayMissing(f"{MODULE_NAME} not found in {', '.join(map(str, MODULE_FOLDERS))}; {install_hint}")
    missing = [p for p in (CRS_SETUP, CRS_RULES) if not p.exists()]
    if missing:
        raise GatewayMissing(f"OWASP CRS not found ({', '.join(map(str, missing))} missing); {install_hint}")
    return GatewayInstall(nginx=Path(nginx), module=module, crs_files=crs_files())


def _find_module() -> Path | None:
    """Return the module named in the package's load_module file, or the first one found."""
    for load_file in MODULE_LOAD_FILES:
        if not load_file.exists():
            continue
        match = re.search(r"load_module\s+(\S+?);", load_file.read_text())
        if match is None:
            continue
        named = Path(match.group(1))
        # A relative path is relative to nginx's prefix (/usr/share/nginx on Debian).
        candidates = [named] if named.is_absolute() else [folder.parent / named for folder in MODULE_FOLDERS]
        for candidate in candidates:
            if candidate.exists():
                return candidate
    return next((folder / MODULE_NAME for folder in MODULE_FOLDERS if (folder / MODULE_NAME).exists()), None)


def crs_files() -> tuple[Path, ...]:
    """Return the CRS files in load order: setup, exclusions before, rules, exclusions after."""
    files = [CRS_SETUP]
    if CRS_BEFORE.exists():
        files.append(CRS_BEFORE)
    files.extend(sorted(CRS_RULES.glob("*.conf")))
    if CRS_AFTER.exists():
        files.append(CRS_AFTER)
    return tuple(files)


def render(install: GatewayInstall, root: Path, port: int, upstream_port: int) -> GatewayFiles:
    """Write nginx.conf and modsecurity.conf under ``root`` for a gateway on 127.0.0.1:``port``."""
    root = root.resolve()
    logs = root / "logs"
    temp = root / "temp"
    for folder in (logs, temp):
        folder.mkdir(parents=True, exist_ok=True)
    files = GatewayFiles(
        root=root,
        nginx_conf=root / "nginx.conf",
        modsecurity_conf=root / "modsecurity.conf",
        pid_file=root / "nginx.pid",
        error_log=logs / "error.log",
        access_log=logs / "access.log",
        json_log=logs / "access.json",
        audit_log=logs / "modsec_audit.json",
    )
    files.modsecurity_conf.write_text(_modsecurity_conf(install, files, temp))
    files.nginx_conf.write_text(_nginx_conf(install, files, temp, port, upstream_port))
    return files


def _modsecurity_conf(install: GatewayInstall, files: GatewayFiles, temp: Path) -> str:
    includes = "\n".join(f"Include {path}" for path in install.crs_files)
    unicode_map = f"SecUnicodeMapFile {UNICODE_MAPPING} 20127" if UNICODE_MAPPING.exists() else ""
    return f"""\
# Written by lab/gateway.py. Blocking mode, JSON audit log, CRS {CRS_RULES}.
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
    "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" \\
    "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecResponseBodyAccess Off
SecTmpDir {temp}/
SecDataDir {temp}/
SecArgumentSeparator &
SecCookieFormat 0
{unicode_map}
SecStatusEngine Off

SecAuditEngine RelevantOnly
SecAuditLogRelevantStatus "^(?:5|4(?!04))"
SecAuditLogParts ABIJDEFHZ
SecAuditLogFormat JSON
SecAuditLogType Serial
SecAuditLog {files.audit_log}

{includes}
"""


# The combined format plus two quoted fields: X-Forwarded-For and the request id.
COMBINED_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" "$http_x_forwarded_for" "$request_id"'
)
COMBINED_TRAILING_FIELDS = ["http_x_forwarded_for", "request_id"]

JSON_FORMAT = (
    "{"
    '"time_iso8601":"$time_iso8601",'
    '"remote_addr":"$remote_addr",'
    '"remote_user":"$remote_user",'
    '"request":"$request",'
    '"status":"$status",'
    '"body_bytes_sent":"$body_bytes_sent",'
    '"request_length":"$request_length",'
    '"request_time":"$request_time",'
    '"http_referer":"$http_referer",'
    '"http_user_agent":"$http_user_agent",'
    '"http_x_forwarded_for":"$http_x_forwarded_for",'
    # Read by the nginx_json connector, which stores only a keyed fingerprint of it.
    '"http_authorization":"$http_authorization",'
    '"host":"$host",'
    '"request_id":"$request_id"'
    "}"
)


def _nginx_conf(install: GatewayInstall, files: GatewayFiles, temp: Path, port: int, upstream_port: int) -> str:
    # As root, nginx would switch its workers to "nobody", which cannot
    # write the logs in the run folder; keep them as root instead.
    user_line = "user root;" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"    {name}_temp_path {temp}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
# Written by lab/gateway.py. Run with: nginx -p {files.root} -c {files.nginx_conf} -e {files.error_log}
{user_line}
load_module {install.module};
worker_processes 1;
pid {files.pid_file};
error_log {files.error_log} warn;
daemon off;

events {{
    worker_connections 512;
}}

http {{
{temp_paths}
    default_type application/octet-stream;
    server_tokens off;

    log_format lab_combined '{COMBINED_FORMAT}';
    log_format lab_json escape=json '{JSON_FORMAT}';

    # Clients of the lab connect from 127.0.0.1 and name the address they
    # stand for in X-Forwarded-For.
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;

    modsecurity on;
    modsecurity_rules_file {files.modsecurity_conf};
    # The audit log's transaction.unique_id equals the access logs' $request_id.
    modsecurity_transaction_id $request_id;

    upstream shop_api {{
        server 127.0.0.1:{upstream_port};
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name {LAB_HOST};
        access_log {files.access_log} lab_combined;
        access_log {files.json_log} lab_json;

        location / {{
            proxy_pass http://shop_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


def check_config(install: GatewayInstall, files: GatewayFiles) -> None:
    """Run ``nginx -t`` on the rendered config; raise RuntimeError with nginx's output when it fails."""
    result = subprocess.run(
        nginx_command(install, files, test=True), capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"nginx -t failed for {files.nginx_conf}:\n{result.stderr.strip()}")


def nginx_command(install: GatewayInstall, files: GatewayFiles, test: bool = False) -> list[str]:
    command = [str(install.nginx), "-p", f"{files.root}/", "-c", str(files.nginx_conf), "-e", str(files.error_log)]
    return [*command, "-t", "-q"] if test else command
