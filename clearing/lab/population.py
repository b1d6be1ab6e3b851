"""The lab's synthetic population: seeded long/short pairs opened at spread-out prices.

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
* **First mark**: the window's first price (the first candle's open) is posted as the mark
  before any trade; it stays the mark through the whole setup.
* **Pairs**: the i-th member of the long side buys from the i-th of the short side, so open
  interest balances exactly. Each pair trades at its own price, as if the positions had been
  opened over the days before the window: the first mark x (1 + u), u uniform on
  -5 %..+5 % (``ENTRY_SPREAD``), drawn as a whole number of ticks, so every trade price is on
  the tick and well inside the 20 % band that trades are checked against. A pair's notional
  is log-uniform between 2,000 and 200,000 USDC (10^(k/100) steps); the size is that over
  the trade price, down to the step (at least one step).
* **Deposits**: each member deposits its notional at the first mark / its leverage, plus its
  unrealized loss at the first mark if it has one, rounded up to the cent. Its equity at the
  first mark (deposit + unrealized PnL) is then at least notional / leverage >= 2 % of the
  notional (leverage <= 50x): initial margin is covered and nobody is liquidated before the
  tape starts. A member at a loss starts at its drawn leverage (to the cent); one with a gain
  starts below it (the gain is on top). The notional is taken at the first mark because the
  margin check values positions at the mark: for a short opened below the mark, notional at
  the trade price / leverage would fall short of 2 % at 50x.
* **Backstop** (the default ``backstop_liquidator``) deposits the whole open-interest
  notional at the first mark: it takes liquidated positions and is never liquidated itself,
  so it is funded well enough never to be the source of an uncovered loss.
* **Insurance fund** seeded with 0.05 % of the open-interest notional at the first mark
  (small on purpose, so that gap-through deficits outrun it and reach the loss policy);
  liquidation penalties add to it during the window as usual.

Example: N = 10, seed 7, first mark 116,605.2. The first pair is m0 (long, 7.3x) and m1
(short, 19.1x), 0.072 at 112,239.91 (u = -3.74 %). At the first mark m0 gains
0.072 x (116,605.2 - 112,239.91) = 314.30088 and m1 loses as much. The notional at the first
mark is 8,395.5744: m0 deposits 8,395.5744 / 7.3 = 1,150.0787.. -> 1,150.08 and has equity
1,464.38088; m1 deposits 8,395.5744 / 19.1 + 314.30088 = 753.8597.. -> 753.86 and has equity
439.55912, above its initial margin 167.911488 (2 %).

>>> population = build_population(10, 7, Decimal("116605.2"), "long")
>>> population.pairs[0]
('m0', 'm1', Decimal('0.072'), Decimal('112239.91'))
>>> [(m.name, fmt(m.leverage), fmt(m.deposit), fmt(m.deposit + m.pnl_at(population.first_mark)))
...  for m in population.members[:2]]
[('m0', '7.3', '1150.08', '1464.38088'), ('m1', '19.1', '753.86', '439.55912')]
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
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
#: a pair trades at the first mark x (1 + u), u uniform on -ENTRY_SPREAD..+ENTRY_SPREAD (on the tick)
ENTRY_SPREAD = Decimal("0.05")
NOTIONAL_MIN_USDC = Decimal(2_000)
NOTIONAL_DECADES = 2  # 2,000 .. 200,000
FUND_FRACTION = Decimal("0.0005")
BACKSTOP_FRACTION = Decimal(1)
ACCOUNTS_MIN = 10
ACCOUNTS_MAX = 5_000

assert ENTRY_SPREAD <= PRICE_BAND, "every trade price must be inside the price band of the first mark"


@dataclass(frozen=True)
class Member:
    """One synthetic account: its side, leverage bucket and leverage, size, trade price and deposit."""

    name: str
    side: str
    bucket: str
    leverage: Decimal
    size: Decimal
    price: Decimal
    deposit: Decimal

    def pnl_at(self, mark: Decimal) -> Decimal:
        """Unrealized PnL of the opening position at ``mark``."""
        return (self.size if self.side == "long" else -self.size) * (mark - self.price)


@dataclass(frozen=True)
class Population:
    """The members, their pairs (long, short, size, trade price), the backstop's deposit and the fund."""

    seed: int
    first_mark: Decimal
    losing_side: str
    members: tuple[Member, ...]
    pairs: tuple[tuple[str, str, Decimal, Decimal], ...]
    backstop_deposit: Decimal
    fund: Decimal

    @property
    def open_interest(self) -> Decimal:
        return sum((size for _, _, size, _ in self.pairs), ZERO)

    @property
    def open_interest_notional(self) -> Decimal:
        """Open interest valued at the first mark (what the backstop and the fund are sized on)."""
        return self.open_interest * self.first_mark

    def summary(self) -> dict[str, Any]:
        """Counts and totals for results.json (money as exact strings)."""
        buckets: dict[str, dict[str, int]] = {}
        for member in self.members:
            sides = buckets.setdefault(member.bucket, {"long": 0, "short": 0})
            sides[member.side] += 1
        prices = [price for _, _, _, price in self.pairs]
        return {
            "members": len(self.members),
            "pairs": len(self.pairs),
            "first_mark": fmt(self.first_mark),
            "trade_prices": f"{fmt(min(prices))}..{fmt(max(prices))}",
            "losing_side": self.losing_side,
            "leverage_buckets": {name: {"range": f"{low}-{high}x", **buckets.get(name, {})}
                                 for name, _, low, high in LEVERAGE_MIX},
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


def build_population(accounts: int, seed: int, first_mark: Decimal, losing_side: str) -> Population:
    """The population for one window (same seed and first mark: same population)."""
    check_accounts(accounts)
    rng = random.Random(seed)
    losing, winning = _sides(rng, accounts)
    longs, shorts = (losing, winning) if losing_side == "long" else (winning, losing)
    width = len(str(accounts - 1))
    members: list[Member] = []
    pairs: list[tuple[str, str, Decimal, Decimal]] = []
    for index, (long_bucket, short_bucket) in enumerate(zip(longs, shorts, strict=True)):
        price = _trade_price(rng, first_mark)
        size = _size(rng, price)
        long_member = _member(rng, f"m{2 * index:0{width}d}", "long", long_bucket, size, price, first_mark)
        short_member = _member(rng, f"m{2 * index + 1:0{width}d}", "short", short_bucket, size, price, first_mark)
        members += [long_member, short_member]
        pairs.append((long_member.name, short_member.name, size, price))
    notional = sum((size for _, _, size, _ in pairs), ZERO) * first_mark
    return Population(seed, first_mark, losing_side, tuple(members), tuple(pairs),
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


def _trade_price(rng: random.Random, first_mark: Decimal) -> Decimal:
    """A pair's trade price: uniform over the ticks within ``ENTRY_SPREAD`` of the first mark."""
    lowest = (first_mark * (1 - ENTRY_SPREAD) / TICK_SIZE).to_integral_value(ROUND_CEILING)
    highest = (first_mark * (1 + ENTRY_SPREAD) / TICK_SIZE).to_integral_value(ROUND_FLOOR)
    return rng.randint(int(lowest), int(highest)) * TICK_SIZE


def _size(rng: random.Random, price: Decimal) -> Decimal:
    notional = NOTIONAL_MIN_USDC * Decimal(10) ** (Decimal(rng.randint(0, 100 * NOTIONAL_DECADES)) / 100)
    return max(STEP_SIZE, round_down(notional / price, STEP_SIZE))


def _member(rng: random.Random, name: str, side: str, bucket: str, size: Decimal, price: Decimal,
            first_mark: Decimal) -> Member:
    """A member of ``side`` trading ``size`` at ``price``; its deposit covers its leverage at the first mark."""
    _, _, low, high = next(spec for spec in LEVERAGE_MIX if spec[0] == bucket)
    leverage = Decimal(rng.randint(low * 10, high * 10)) / 10
    pnl = (size if side == "long" else -size) * (first_mark - price)
    deposit = round_up(size * first_mark / leverage + max(ZERO, -pnl), CENT)
    assert deposit + pnl >= size * first_mark * INITIAL_MARGIN_FRACTION, "leverage above the market's maximum"
    return Member(name, side, bucket, leverage, size, price, deposit)


def setup_commands(population: Population, policy: str, at: datetime) -> list[dict[str, Any]]:
    """Market, policy, first mark, fund, backstop, members and their trades (each pair at its price), all at ``at``.

    ``set_parameters`` of ``loss_policy`` is governed (ADR 10), but on a fresh store no
    officer is registered and ``approvals_required`` is 1, so the clearinghouse is
    bootstrapping and the change applies without approval (recorded ``rule: bootstrap``).
    """
    when = at.isoformat()
    commands: list[dict[str, Any]] = [
        {"type": "create_market", "id": "lab-market", "market": MARKET, "kind": "perpetual",
         "tick_size": fmt(TICK_SIZE), "step_size": fmt(STEP_SIZE),
         "initial_margin_fraction": fmt(INITIAL_MARGIN_FRACTION),
         "maintenance_margin_fraction": fmt(MAINTENANCE_MARGIN_FRACTION), "price_band": fmt(PRICE_BAND)},
        {"type": "set_parameters", "id": "lab-policy", "market": MARKET, "parameters": {"loss_policy": policy}},
        {"type": "price", "id": "lab-first-mark", "market": MARKET, "price": fmt(population.first_mark)},
        {"type": "fund_insurance", "id": "lab-fund", "amount": fmt(population.fund), "contributor": "lab"},
        {"type": "open_account", "id": f"lab-open-{BACKSTOP}", "account": BACKSTOP},
        {"type": "deposit", "id": f"lab-deposit-{BACKSTOP}", "account": BACKSTOP,
         "amount": fmt(population.backstop_deposit)},
    ]
    for member in population.members:
        commands.append({"type": "open_account", "id": f"lab-open-{member.name}", "account": member.name})
        commands.append({"type": "deposit", "id": f"lab-deposit-{member.name}", "account": member.name,
                         "amount": fmt(member.deposit)})
    for long_name, short_name, size, price in population.pairs:
        commands.append({"type": "trade", "id": f"lab-trade-{long_name}-{short_name}", "market": MARKET,
                         "buyer": long_name, "seller": short_name, "size": fmt(size), "price": fmt(price)})
    return [{**command, "at": when} for command in commands]
