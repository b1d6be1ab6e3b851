"""``clearing serve``: the read-only HTTP API and dashboard over the projections and the log (ADR 29)."""
