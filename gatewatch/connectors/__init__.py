"""The connector registry: look up a log format's connector by name or alias.

Built-in connectors are listed in ``_BUILTIN_CONNECTORS``. Other packages add
connectors through the ``gatewatch.connectors`` entry-point group; each entry
point names a ``Connector`` subclass. Entry points are loaded on the first
lookup, once per process.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
from importlib.metadata import entry_points

from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult
from gatewatch.errors import SourceError

__all__ = [
    "Connector",
    "ConnectorOptions",
    "ParseResult",
    "connector_names",
    "get_connector",
    "register_connector",
]

ENTRY_POINT_GROUP = "gatewatch.connectors"

# module path and class name of each built-in connector
_BUILTIN_CONNECTORS: tuple[tuple[str, str], ...] = (
    ("gatewatch.connectors.combined", "CombinedConnector"),
    ("gatewatch.connectors.nginx_json", "NginxJsonConnector"),
    ("gatewatch.connectors.kong", "KongConnector"),
    ("gatewatch.connectors.envoy", "EnvoyConnector"),
    ("gatewatch.connectors.traefik", "TraefikConnector"),
    ("gatewatch.connectors.haproxy", "HaproxyConnector"),
    ("gatewatch.connectors.modsecurity", "ModsecurityConnector"),
    ("gatewatch.connectors.aws_alb", "AwsAlbConnector"),
    ("gatewatch.connectors.aws_apigateway", "AwsApiGatewayConnector"),
    ("gatewatch.connectors.aws_waf", "AwsWafConnector"),
    ("gatewatch.connectors.cloudflare", "CloudflareConnector"),
    ("gatewatch.connectors.gcp_lb", "GcpLbConnector"),
    ("gatewatch.connectors.json_lines", "JsonLinesConnector"),
)

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_load_lock = threading.Lock()
_loaded = False
# canonical name -> connector class
_connectors: dict[str, type[Connector]] = {}
# canonical name or alias -> canonical name
_names: dict[str, str] = {}
# entry-point name -> why it could not be loaded
_plugin_errors: dict[str, str] = {}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_connector(connector: type[Connector]) -> None:
    """Register a connector class under its ``name`` and ``aliases``.

    Raises ValueError when the class is not a Connector or when one of its
    names is already taken by another connector.
    """
    if not (isinstance(connector, type) and issubclass(connector, Connector)):
        raise ValueError(f"{connector!r} is not a subclass of gatewatch.connectors.Connector")
    name = getattr(connector, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"connector class {connector.__qualname__} has no name")
    canonical = _normalize(name)
    keys = [canonical, *(_normalize(alias) for alias in connector.aliases)]
    with _lock:
        for key in keys:
            owner = _names.get(key)
            if owner is not None and _connectors[owner] is not connector:
                raise ValueError(
                    f"connector name {key!r} of {connector.__qualname__} is already used by "
                    f"{_connectors[owner].__qualname__}"
                )
        _connectors[canonical] = connector
        for key in keys:
            _names[key] = canonical


def _load_builtins() -> None:
    for module_name, class_name in _BUILTIN_CONNECTORS:
        module = importlib.import_module(module_name)
        register_connector(getattr(module, class_name))


def _load_entry_points() -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            connector = entry_point.load()
            register_connector(connector)
        except Exception as error:  # a broken plugin must not break the built-ins
            _plugin_errors[_normalize(entry_point.name)] = f"{type(error).__name__}: {error}"
            logger.warning(
                "cannot load connector plugin %r (%s): %s", entry_point.name, entry_point.value, error
            )
            continue
        alias = _normalize(entry_point.name)
        with _lock:
            _names.setdefault(alias, _normalize(connector.name))


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        _load_builtins()
        _load_entry_points()
        _loaded = True


def connector_names() -> list[str]:
    """Return the canonical names of all connectors, sorted."""
    _ensure_loaded()
    return sorted(_connectors)


def get_connector(name: str) -> type[Connector]:
    """Return the connector class for a name or alias (case-insensitive).

    Raises SourceError for an unknown name, with the closest valid name and
    the list of valid names.
    """
    _ensure_loaded()
    key = _normalize(name)
    canonical = _names.get(key)
    if canonical is not None:
        return _connectors[canonical]
    if key in _plugin_errors:
        raise SourceError(
            f"connector {name!r} is installed but failed to load: {_plugin_errors[key]}; "
            "fix or reinstall the package that provides it"
        )
    valid = sorted(_names)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    raise SourceError(f"unknown connector {name!r}{hint} Valid names: {', '.join(valid)}.")
