"""gatewatch: detect API abuse in gateway and WAF logs."""

__version__ = "0.1.0"
