"""Stateful property test on an SQLite file: random commands, restarts and re-posts.

Rules post deposits, withdrawals, trades, marks and contributions; ``restart`` throws the
application away and opens a new one on the same file (everything is replayed from the
store); ``repost`` sends an earlier applied command again, which must be reported
``already_applied`` and write nothing. After every step the invariants are re-derived
from the log (``check_ledger``) and compared with a plain model of the money moved.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from clearing.audit.invariants import check_ledger
from clearing.settings import store_env
from tests.ledger import Ledger
from tests.unit.test_properties import ACCOUNTS, SETUP, commands


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def open_store(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        self.db = str(Path(self.directory.name) / "ledger.db")
        self.ledger = Ledger(store_env(self.db))
        self.ledger.post_ok(SETUP)
        self.applied: list[dict] = []
        self.rejected: list[tuple[dict, str]] = []
        self.model_cash = {"deposits": Decimal(0), "withdrawals": Decimal(0), "contributions": Decimal(0)}
        self.model_cash["deposits"] = sum(Decimal(c["amount"]) for c in SETUP if c["type"] == "deposit")
        self.sequence = 0

    def teardown(self) -> None:
        self.directory.cleanup()

    @rule(command=commands())
    def post(self, command: dict) -> None:
        self.sequence += 1
        command = {**command, "id": f"s{self.sequence}"}
        head = self.ledger.head()
        (outcome,) = self.ledger.post([command])
        if outcome.status == "applied":
            self.applied.append(command)
            key = {"deposit": "deposits", "withdraw": "withdrawals", "fund_insurance": "contributions"}.get(command["type"])
            if key:
                self.model_cash[key] += Decimal(command["amount"])
        else:
            self.ledger.assert_rejection_wrote_only_its_answer(head, outcome)
            if self.ledger.head() > head:  # a rule rejection: its answer is final
                self.rejected.append((command, outcome.code))

    @rule()
    def restart(self) -> None:
        before = [self.ledger.account(name) for name in ACCOUNTS]
        self.ledger = Ledger(store_env(self.db))
        assert [self.ledger.account(name) for name in ACCOUNTS] == before

    @precondition(lambda self: self.applied)
    @rule(data=st.data())
    def repost(self, data) -> None:
        command = data.draw(st.sampled_from(self.applied))
        head = self.ledger.head()
        (outcome,) = self.ledger.post([command])
        assert outcome.status == "already_applied"
        assert self.ledger.head() == head

    @precondition(lambda self: self.rejected)
    @rule(data=st.data())
    def repost_rejected(self, data) -> None:
        command, code = data.draw(st.sampled_from(self.rejected))
        head = self.ledger.head()
        (outcome,) = self.ledger.post([command])
        assert (outcome.status, outcome.code) == ("already_rejected", code)
        assert self.ledger.head() == head

    @invariant()
    def ledger_is_exact(self) -> None:
        if not hasattr(self, "ledger"):
            return
        fold = check_ledger(self.ledger.app)
        assert (fold.deposits, fold.withdrawals, fold.contributions) == (
            self.model_cash["deposits"], self.model_cash["withdrawals"], self.model_cash["contributions"])


LedgerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
test_ledger_machine = LedgerMachine.TestCase
