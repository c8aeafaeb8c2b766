"""Find rule files, parse them and compile them, collecting every fault.

A broken rule does not stop the others: ``load_rules`` returns the rules
that compiled and a list of errors, each with the file and line at fault.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl
from pydantic import ValidationError

from gatewatch.engine.allowlist import Allowlists, is_lists_document, load_lists
from gatewatch.engine.compiler import CompiledRule, compile_rule
from gatewatch.engine.rule import Rule
from gatewatch.errors import GatewatchError, RuleError
from gatewatch.events import conform
from gatewatch.ingest import add_lineage
from gatewatch.store import Store
from gatewatch.yamlsource import YamlDocument, load_yaml, raise_validation_error

BUILTIN = "builtin"
RULE_SUFFIXES = (".yaml", ".yml")


@dataclass
class RuleSet:
    """The rules that compiled, and the faults of those that did not."""

    rules: list[CompiledRule] = field(default_factory=list)
    errors: list[GatewatchError] = field(default_factory=list)
    allowlists: Allowlists = field(default_factory=Allowlists)

    def by_id(self, rule_id: str) -> CompiledRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def builtin_rules_dir() -> Path:
    """Return the folder of the shipped rule pack, installed or in a checkout."""
    installed = resources.files("gatewatch") / "rules"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / "rules"


def rule_files(location: str | Path) -> list[Path]:
    """Expand one rule location (a file, a folder, or `builtin`) into YAML files."""
    path = builtin_rules_dir() if str(location) == BUILTIN else Path(location)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
    if path.is_file():
        return [path]
    raise RuleError("rule file or folder not found; check the `rules:` list in the config", path)


def load_rules(locations: list[str | Path]) -> RuleSet:
    """Load every rule under ``locations``; collect the faults instead of stopping."""
    result = RuleSet()
    files: list[Path] = []
    for location in locations:
        try:
            files.extend(rule_files(location))
        except GatewatchError as exc:
            # One missing folder must not disable the rules found elsewhere.
            result.errors.append(exc)
    documents: list[tuple[Path, YamlDocument]] = []
    for path in files:
        try:
            document = load_yaml(path, RuleError)
            if is_lists_document(document.data):
                load_lists(document, result.allowlists)
            else:
                documents.append((path, document))
        except GatewatchError as exc:
            result.errors.append(exc)
    seen: dict[str, str] = {}
    for path, document in documents:
        try:
            rule = rule_from_document(path, document)
            rule.exclusion_sql = _allowlist_sql(rule, result.allowlists)
            rule.list_conditions = {name: result.allowlists.match_sql(name) for name in result.allowlists.lists}
            rule.network_files = [str(path) for path in result.allowlists.network_files]
            compiled = compile_rule(rule)
        except GatewatchError as exc:
            result.errors.append(exc)
            continue
        if compiled.id in seen:
            result.errors.append(
                RuleError(
                    f"duplicate rule id {compiled.id!r}, also used in {seen[compiled.id]}; rename one",
                    path,
                    compiled.rule.line_of("id"),
                )
            )
            continue
        seen[compiled.id] = str(path)
        result.rules.append(compiled)
    _check_in_duckdb(result)
    return result


# One plausible event, so that checking a rule's query also runs its
# expressions on values: `status = 'abc'` or a bad regular expression fail
# only when a row reaches them.
_PROBE_EVENT = {
    "ts": datetime(2000, 1, 1, 0, 0, 30),
    "client_ip": "192.0.2.1",
    "method": "GET",
    "scheme": "https",
    "host": "api.example.com",
    "path": "/api/v1/items/1",
    "query": "page=1",
    "http_version": "HTTP/1.1",
    "status": 200,
    "bytes_sent": 512,
    "bytes_received": 128,
    "duration_ms": 12.5,
    "user_agent": "curl/8.5.0",
    "referer": "https://example.com/",
    "user": "alice",
    "malformed": False,
    "extra": "{}",
}


def _check_in_duckdb(result: RuleSet) -> None:
    """Run each rule's query over one probe event in an empty store.

    A wrong function name, a type mismatch or an invalid pattern is then
    reported now, with the rule's file, and not at every tick.
    """
    if not result.rules:
        return
    with Store(":memory:") as store:
        frame = add_lineage(conform(pl.DataFrame([_PROBE_EVENT]).with_columns(offset=pl.lit(0))), "probe", "probe", "probe")
        store.insert_frame("events", frame)
        first_end, last_end = datetime(1999, 12, 31), datetime(2000, 1, 2)
        for compiled in list(result.rules):
            store.con.begin()
            try:
                if compiled.before_slice is not None:
                    compiled.before_slice(store.con, first_end, last_end)
                params = compiled.candidate_params(first_end, last_end)
                store.con.execute(compiled.candidates_sql, params).fetchall()
                if compiled.after_slice is not None:
                    compiled.after_slice(store.con, first_end, last_end)
            except duckdb.Error as exc:
                detail = str(exc).splitlines()[0]
                key = _probe_key(compiled.rule)
                result.errors.append(
                    RuleError(
                        f"DuckDB rejects the rule's SQL: {detail}",
                        compiled.rule.path,
                        compiled.rule.line_of(key),
                    )
                )
                result.rules.remove(compiled)
            finally:
                store.con.rollback()


def _probe_key(rule: Rule) -> str:
    """Return the rule key whose line a DuckDB fault is reported at."""
    if rule.type == "sql":
        return "query"
    if rule.type in ("baseline", "new_value", "sequence", "flatline"):
        return "where" if rule.where and rule.type != "sequence" else rule.type
    return "where" if rule.where else "having"


def _allowlist_sql(rule: Rule, allowlists: Allowlists) -> str:
    for index, name in enumerate(rule.allowlist):
        if name not in allowlists.lists:
            known = sorted(allowlists.lists)
            close = difflib.get_close_matches(name, known, n=1)
            hint = (
                f"; did you mean {close[0]!r}?" if close
                else f"; defined lists: {', '.join(known)}" if known
                else "; define it under `lists:` in a YAML file among the rule files"
            )
            raise RuleError(f"unknown list {name!r} in `allowlist`{hint}", rule.path, rule.line_of("allowlist", index))
    return allowlists.exclusion_sql(rule.allowlist)


def load_rule(path: Path) -> Rule:
    """Parse one rule file into a Rule; raise RuleError with the line at fault."""
    return rule_from_document(path, load_yaml(path, RuleError))


def rule_from_document(path: Path, document: YamlDocument) -> Rule:
    if not isinstance(document.data, dict):
        raise RuleError("a rule file must be a YAML mapping with keys such as `id:` and `type:`", path, 1)
    try:
        rule = Rule.model_validate(document.data)
    except ValidationError as exc:
        raise_validation_error(document, exc, RuleError, model=Rule)
    rule.path = str(path)
    rule.line = 1
    rule.document = document
    return rule
