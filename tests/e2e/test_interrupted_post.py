"""An interrupted ``clearing post`` can simply be run again.

The post is killed with SIGKILL in the middle of a stream (possibly inside a transaction),
then the same file is posted again. The store must end exactly as after one clean run:
every command applied once, in order, nothing lost and nothing doubled.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess

from clearing.audit.invariants import check_ledger
from clearing.settings import store_env
from tests import margin_state
from tests.e2e.test_cli import CLEARING
from tests.ledger import Ledger, trade_order_free_events, unversioned

ACCOUNTS = [f"acct-{n}" for n in range(40)]


def script(path) -> None:
    rng = random.Random(3)
    lines = [{"type": "create_market", "id": "m", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
              "step_size": "0.001", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.05",
              "at": "2025-01-01T00:00:00Z"}]
    for name in ACCOUNTS:
        lines += [{"type": "open_account", "id": f"o-{name}", "account": name, "at": "2025-01-01T00:00:00Z"},
                  {"type": "deposit", "id": f"d-{name}", "account": name, "amount": "50000", "at": "2025-01-01T00:00:00Z"}]
    price = 50000
    for step in range(3000):
        if step % 50 == 0:
            price += rng.randint(-400, 400)
            lines.append({"type": "price", "id": f"p{step}", "market": "BTC-PERP", "price": str(price),
                          "at": f"2025-01-01T{step // 3600:02d}:{step // 60 % 60:02d}:{step % 60:02d}Z"})
        buyer, seller = rng.sample(ACCOUNTS, 2)
        lines.append({"type": "trade", "id": f"t{step}", "market": "BTC-PERP", "buyer": buyer, "seller": seller,
                      "size": f"0.{rng.randint(1, 300):03d}", "price": str(price), "at": "2025-01-01T00:00:00Z"})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def test_killed_post_rerun_ends_exactly_like_a_clean_run(tmp_path):
    commands = tmp_path / "commands.jsonl"
    script(commands)
    killed_db, clean_db = str(tmp_path / "killed.db"), str(tmp_path / "clean.db")

    process = subprocess.Popen([CLEARING, "--db", killed_db, "post", "--batch-size", "40", str(commands)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for _ in range(1500):
        assert process.stdout.readline()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    interrupted_head = Ledger(store_env(killed_db)).head()

    rerun = subprocess.run([CLEARING, "--db", killed_db, "post", "--json", str(commands)],
                           capture_output=True, text=True, timeout=300)
    clean = subprocess.run([CLEARING, "--db", clean_db, "post", str(commands)], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0 and clean.returncode == 0, rerun.stderr + clean.stderr
    statuses = [json.loads(line)["status"] for line in rerun.stdout.splitlines()]
    assert statuses.count("already_applied") >= 1500 and "rejected" not in statuses

    killed, reference = Ledger(store_env(killed_db)), Ledger(store_env(clean_db))
    assert interrupted_head < killed.head()
    # the same command and domain events, in the same order (per-batch market events and the
    # grouping of fills into runs differ with batch size)
    assert trade_order_free_events(killed.app) == trade_order_free_events(reference.app)
    assert [unversioned(killed.account(name)) for name in ACCOUNTS] == [unversioned(reference.account(name))
                                                                         for name in ACCOUNTS]
    market, expected = (margin_state.market_view(ledger.app, "BTC-PERP") for ledger in (killed, reference))
    assert (market["open_interest"], market["volume"], market["trades"]) == (
        expected["open_interest"], expected["volume"], expected["trades"])
    assert dict(killed.app.get_market("BTC-PERP").holders) == dict(reference.app.get_market("BTC-PERP").holders)
    check_ledger(killed.app)

