"""The driver's refusals classified (``clearing.pg_probe``); the live ones are in tests/e2e/test_exit_codes.py."""

from __future__ import annotations

import pytest

from clearing.pg_probe import classify


@pytest.mark.parametrize(("message", "code", "says"), [
    ('connection failed: connection to server at "10.0.0.9", port 5432 failed: No route to host', "host_unreachable",
     "host db cannot be reached"),
    ("connection failed: timeout expired", "connect_timeout", "did not answer within 3 s"),
    ('FATAL:  password authentication failed for user "bob"', "auth_failed", "refused user bob"),
    ("connection failed: server closed the connection unexpectedly", "store_unreachable", "cannot be used by user bob"),
])
def test_each_refusal_gets_its_code_and_names_where(message, code, says):
    error = classify(message, "db", "5432", "bob", "ledger", 3)
    assert error.code == code and says in error.message and error.field == "db"
