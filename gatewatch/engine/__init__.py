"""Detection rules: YAML model, SQL checks and compiler, event-time evaluator."""
