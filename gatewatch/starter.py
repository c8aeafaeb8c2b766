"""The commented starter config that `gatewatch init` writes."""

STARTER_CONFIG = """\
# gatewatch configuration. Relative paths are read from this file's folder.

# The DuckDB file that stores events, rejects, alerts and all run state.
database: gatewatch.duckdb

# Log sources. `format` names a connector, such as `combined` (nginx and
# Apache), `nginx_json`, `aws_alb`, `aws_waf`, `cloudflare`, `envoy`,
# `haproxy` or `modsecurity` (docs/connectors.md lists them all). `auto`
# picks one per file from its first lines. Check a file with
# `gatewatch sources test FILE`. `path` is a file, a folder, a glob or an
# s3://bucket/prefix/. Rotated files (access.log.1, access.log.2.gz,
# access.log.3.zst) are read once each.
sources:
  - name: edge
    format: combined
    path: /var/log/nginx/access.log*
    # Time zone for log times that carry no UTC offset (IANA name).
    timezone: UTC
  # Logs delivered to S3 (ALB, WAF, Cloudflare). Credentials come from the
  # standard AWS chain (environment, ~/.aws files, instance role).
  # - name: alb
  #   format: auto
  #   path: s3://my-log-bucket/AWSLogs/123456789012/elasticloadbalancing/
  #   s3:
  #     region: eu-west-1

# Rule files or folders; `builtin` is the rule pack shipped with gatewatch.
rules:
  - builtin
  # - rules/            # your own rules

# Where alerts go. Each alert is delivered once to each notifier.
notifiers:
  - type: terminal
  # Slack with a bot token (chat:write scope) and a channel. The token is read
  # from the environment variable named here, never from this file.
  # - type: slack
  #   token_env: SLACK_BOT_TOKEN
  #   channel: "#api-security"
  #   thread_window: 24h   # repeats reply in the first alert's thread
  #   digest_threshold: 10 # from this many new alerts in one run, one digest
  # Or an incoming webhook, whose URL is read from the named variable:
  # - type: slack
  #   webhook_url_env: SLACK_WEBHOOK_URL
  # A JSON webhook signed with HMAC-SHA256, and a JSON-lines file. Every
  # notifier takes min_severity, rules and exclude_rules.
  # - type: webhook
  #   url: https://soc.example.com/hooks/gatewatch
  #   secret_env: GATEWATCH_HOOK_SECRET
  #   min_severity: high
  # - type: jsonl
  #   path: alerts.jsonl

engine:
  # Windows close this long after the newest event time seen.
  allowed_lateness: 1m
  # A new rule first looks back this far over stored events.
  new_rule_lookback: 7d

# How often `gatewatch serve` runs each step. Rules are evaluated at the
# interval of their own `every`.
schedule:
  every: 1m               # ingest interval of each source
  # sources: {edge: 15s}  # per-source ingest interval
  deliver_every: 10s
  # How long a step waits for `gatewatch query` to release the database.
  database_wait: 30s

# Retention (off unless set). Events older than `events` are deleted, except
# those a rule window not yet evaluated still needs. With `export_dir` they
# are first written as Parquet files partitioned by date.
# retention:
#   events: 90d
#   export_dir: archive/
#   rejects: 30d
"""
