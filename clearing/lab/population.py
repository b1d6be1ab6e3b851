"""The lab's synthetic population: seeded members, paired long/short at the window's entry.

Everything here is generated at the boundary with ``random.Random(seed)``; the ledger only
sees ordinary commands with their business times (``at``), so a run is an ordinary log.

The model (also in docs/loss-policies.md):

* **Market** ``BTCUSDT-PERP``: perpetual, tick 0.01, step 0.001, one margin tier with
  initial margin 2 % (50x at most) and maintenance 1 %, price band 20 % (the tape's largest
  1-minute move is 7.3 %). Every other risk parameter has its default; ``loss_policy`` is the
  policy under test.
* **Members**: N accounts (even: they trade in pairs). Leverage mix: 60 % at 2-5x, 30 % at
  5-20x, 10 % at 20-50x (the *tail*), each leverage uniform in its range to 0.1x. 80 % of the
  tail is put on the window's losing side (the side the worst price hurts; longs in a crash),
  the rest of each side is filled from the other buckets at random.
* **Pairs**: the i-th member of the long side buys from the i-th of the short side at the
  entry price (the first candle's open), so open interest balances exactly. A pair's
  notional is log-uniform between 2,000 and 200,000 USDC (10^(k/100) steps); the size is that
  over the entry, down to the step (at least one step). Each member deposits its side's
  notional / leverage, rounded up to the cent (so equity covers initial margin: leverage <= 50).
* **Backstop** (the default ``backstop_liquidator``) deposits the whole open-interest
  notional at entry: it takes liquidated positions and is never liquidated itself, so it is
  funded well enough never to be the source of an uncovered loss.
* **Insurance fund** seeded with 0.05 % of the open-interest notional (small on purpose, so
  that gap-through deficits outrun it and reach the loss policy); liquidation penalties add
  to it during the window as usual.

Example: N = 4 may give pairs (m0000 long 25.3x, m0001 short 3.1x, 0.412) and (m0002 long
4.2x, m0003 short 11.7x, 1.087) at entry 116,605.2; m0000 deposits 0.412 x 116,605.2 / 25.3 =
1,898.88 (rounded up to the cent).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from clearing.money import ZERO, fmt, round_down, round_up

MARKET = "BTCUSDT-PERP"
TICK_SIZE = Decimal("0.01")
STEP_SIZE = Decimal("0.001")
INITIAL_MARGIN_FRACTION = Decimal("0.02")
MAINTENANCE_MARGIN_FRACTION = Decimal("0.01")
PRICE_BAND = Decimal("0.2")
CENT = Decimal("0.01")
BACKSTOP = "backstop"
#: (bucket, share of the members, lowest and highest leverage)
LEVERAGE_MIX = (("low", Decimal("0.6"), 2, 5), ("mid", Decimal("0.3"), 5, 20), ("tail", Decimal("0.1"), 20, 50))
TAIL_ON_LOSING_SIDE = Decimal("0.8")
NOTIONAL_MIN_USDC = Decimal(2_000)
NOTIONAL_DECADES = 2  # 2,000 .. 200,000
FUND_FRACTION = Decimal("0.0005")
BACKSTOP_FRACTION = Decimal(1)
ACCOUNTS_MIN = 10
ACCOUNTS_MAX = 5_000


@dataclass(frozen=True)
class Member:
    """One synthetic account: its side, leverage bucket and leverage, size and deposit."""

    name: str
    side: str
    bucket: str
    leverage: Decimal
    size: Decimal
    deposit: Decimal


@dataclass(frozen=True)
class Population:
    """The members, their pairs (long, short, size), the backstop's deposit and the fund."""

    seed: int
    entry: Decimal
    losing_side: str
    members: tuple[Member, ...]
    pairs: tuple[tuple[str, str, Decimal], ...]
    backstop_deposit: Decimal
    fund: Decimal

    @property
    def open_interest(self) -> Decimal:
        return sum((size for _, _, size in self.pairs), ZERO)

    @property
    def open_interest_notional(self) -> Decimal:
        return self.open_interest * self.entry

    def summary(self) -> dict[str, Any]:
        """Counts and totals for results.json (money as exact strings)."""
        buckets: dict[str, dict[str, int]] = {}
        for member in self.members:
            sides = buckets.setdefault(member.bucket, {"long": 0, "short": 0})
            sides[member.side] += 1
        return {
            "members": len(self.members),
            "pairs": len(self.pairs),
            "entry_price": fmt(self.entry),
            "losing_side": self.losing_side,
            "leverage_buckets": {name: {"range": f"{low}-{high}x", **buckets.get(name, {})} for name, _, low, high in LEVERAGE_MIX},
            "open_interest": fmt(self.open_interest),
            "open_interest_notional": fmt(self.open_interest_notional),
            "member_deposits": fmt(sum((m.deposit for m in self.members), ZERO)),
            "backstop_deposit": fmt(self.backstop_deposit),
            "insurance_fund_seed": fmt(self.fund),
        }


def check_accounts(accounts: int) -> None:
    """Raise ``ValueError`` with the reason when ``accounts`` cannot be a population."""
    if not ACCOUNTS_MIN <= accounts <= ACCOUNTS_MAX:
        raise ValueError(f"--accounts must be between {ACCOUNTS_MIN} and {ACCOUNTS_MAX}, got {accounts}")
    if accounts % 2:
        raise ValueError(f"--accounts must be even (members trade in long/short pairs), got {accounts}")


def build_population(accounts: int, seed: int, entry: Decimal, losing_side: str) -> Population:
    """The population for one window (same seed and entry: same population)."""
    check_accounts(accounts)
    rng = random.Random(seed)
    losing, winning = _sides(rng, accounts)
    longs, shorts = (losing, winning) if losing_side == "long" else (winning, losing)
    width = len(str(accounts - 1))
    members: list[Member] = []
    pairs: list[tuple[str, str, Decimal]] = []
    for index, (long_bucket, short_bucket) in enumerate(zip(longs, shorts, strict=True)):
        size = _size(rng, entry)
        long_member = _member(rng, f"m{2 * index:0{width}d}", "long", long_bucket, size, entry)
        short_member = _member(rng, f"m{2 * index + 1:0{width}d}", "short", short_bucket, size, entry)
        members += [long_member, short_member]
        pairs.append((long_member.name, short_member.name, size))
    notional = sum((size for _, _, size in pairs), ZERO) * entry
    return Population(seed, entry, losing_side, tuple(members), tuple(pairs),
                      round_up(notional * BACKSTOP_FRACTION, CENT), round_up(notional * FUND_FRACTION, CENT))


def _sides(rng: random.Random, accounts: int) -> tuple[list[str], list[str]]:
    """Bucket names of the losing and the winning side, ``accounts // 2`` each, shuffled."""
    counts = {name: int((share * accounts).to_integral_value(ROUND_HALF_UP)) for name, share, _, _ in LEVERAGE_MIX}
    counts["low"] = accounts - counts["mid"] - counts["tail"]
    half = accounts // 2
    tail_losing = min(half, int((TAIL_ON_LOSING_SIDE * counts["tail"]).to_integral_value(ROUND_HALF_UP)))
    others = ["mid"] * counts["mid"] + ["low"] * counts["low"]
    rng.shuffle(others)
    losing = ["tail"] * tail_losing + others[: half - tail_losing]
    winning = ["tail"] * (counts["tail"] - tail_losing) + others[half - tail_losing:]
    rng.shuffle(losing)
    rng.shuffle(winning)
    assert len(losing) == len(winning) == half
    return losing, winning


def _size(rng: random.Random, entry: Decimal) -> Decimal:
    notional = NOTIONAL_MIN_USDC * Decimal(10) ** (Decimal(rng.randint(0, 100 * NOTIONAL_DECADES)) / 100)
    return max(STEP_SIZE, round_down(notional / entry, STEP_SIZE))


def _member(rng: random.Random, name: str, side: str, bucket: str, size: Decimal, entry: Decimal) -> Member:
    _, _, low, high = next(spec for spec in LEVERAGE_MIX if spec[0] == bucket)
    leverage = Decimal(rng.randint(low * 10, high * 10)) / 10
    deposit = round_up(size * entry / leverage, CENT)
    assert deposit >= size * entry * INITIAL_MARGIN_FRACTION, "leverage above the market's maximum"
    return Member(name, side, bucket, leverage, size, deposit)


def setup_commands(population: Population, policy: str, at: datetime) -> list[dict[str, Any]]:
    """Market, policy, first mark, fund, backstop, members and their trades, all at ``at``.

    ``set_parameters`` of ``loss_policy`` is governed (ADR 10), but on a fresh store no
    officer is registered and ``approvals_required`` is 1, so the clearinghouse is
    bootstrapping and the change applies without approval (recorded ``rule: bootstrap``).
    """
    when = at.isoformat()
    entry = fmt(population.entry)
    commands: list[dict[str, Any]] = [
        {"type": "create_market", "id": "lab-market", "market": MARKET, "kind": "perpetual", "tick_size": fmt(TICK_SIZE),
         "step_size": fmt(STEP_SIZE), "initial_margin_fraction": fmt(INITIAL_MARGIN_FRACTION),
         "maintenance_margin_fraction": fmt(MAINTENANCE_MARGIN_FRACTION), "price_band": fmt(PRICE_BAND)},
        {"type": "set_parameters", "id": "lab-policy", "market": MARKET, "parameters": {"loss_policy": policy}},
        {"type": "price", "id": "lab-entry", "market": MARKET, "price": entry},
        {"type": "fund_insurance", "id": "lab-fund", "amount": fmt(population.fund), "contributor": "lab"},
        {"type": "open_account", "id": f"lab-open-{BACKSTOP}", "account": BACKSTOP},
        {"type": "deposit", "id": f"lab-deposit-{BACKSTOP}", "account": BACKSTOP, "amount": fmt(population.backstop_deposit)},
    ]
    for member in population.members:
        commands.append({"type": "open_account", "id": f"lab-open-{member.name}", "account": member.name})
        commands.append({"type": "deposit", "id": f"lab-deposit-{member.name}", "account": member.name,
                         "amount": fmt(member.deposit)})
    for long_name, short_name, size in population.pairs:
        commands.append({"type": "trade", "id": f"lab-trade-{long_name}-{short_name}", "market": MARKET,
                         "buyer": long_name, "seller": short_name, "size": fmt(size), "price": entry})
    return [{**command, "at": when} for command in commands]
