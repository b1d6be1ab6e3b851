"""Which holders a re-mark can have made insolvent: the solvency check's exact shortcut.

Rule: an account last valued at equity ``C >= 0`` with the marks then in force can only
have gone below zero since, without an event of its own, if the marks of its markets moved
far enough: its equity now is ``C + sum(size_m x (unit_now_m - unit_then_m))`` and so at
least ``C - sum(|size_m| x travel_m)``, where ``travel_m`` is how far market ``m``'s unit
value (mark x contract size) has travelled since, up and down alike (the sum of the
absolute changes, which is never less than the net change). The cushion ``C`` is split
equally over the ``k`` markets held: market ``m`` may travel ``C / (k x |size_m|)``
(rounded down) before the account must be valued again. While no market has used its
share, the loss is below ``C`` and equity is still >= 0, so only the accounts a re-mark
carries past their share are valued; every account that could be below zero is among them.

Example: equity 100, long 2 BTC-PERP (contract 1), nothing else held. BTC-PERP may travel
100 / (1 x 2) = 50. A re-mark from 30,000 to 29,980 (travel 20) values nobody; a second
to 30,010 (travel 20 + 30 = 50) reaches the share and the account is valued again (its
equity is then 100 + 2 x 10 = 120, and its cushion is recomputed from there).

Why: the invariants value every account at the end of every command in which its cash,
its positions or one of its markets' marks changed. Valuing every holder of a re-marked
market was 85 % of the invariants' time on the bench log (5,000 holders a re-mark); this
keeps the same set of failures and values the holders a move can matter for.

An account whose equity was not checked (its liquidation held back) or is exactly zero
gets a zero share: any re-mark of its markets values it again, as before this shortcut.
This module shares nothing with the engine's margin code: it is part of the audit's own
arithmetic.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

ZERO = Decimal(0)
ONE = Decimal(1)
# Rounding that can only make an account be valued sooner: shares down, travel up.
_DOWN = Context(prec=16, rounding=ROUND_FLOOR)
_UP = Context(prec=16, rounding=ROUND_CEILING)


class Cushions:
    """Per market, the accounts in order of the travel at which each must be valued again.

    A valuation is only noted (``valued``); the notes become heap entries at the next
    re-mark, so an account valued many times between two re-marks is entered once.
    """

    def __init__(self) -> None:
        self._travel: dict[str, Decimal] = {}  # market -> total travel of its unit value so far
        self._unit: dict[str, Decimal] = {}  # market -> unit value last seen
        self._due: dict[str, list[tuple[Decimal, str, int]]] = {}  # market -> heap of (travel due, account, version)
        self._version: dict[str, int] = {}  # account -> version of its entries in force
        self._noted: dict[str, tuple[Decimal, list[tuple[str, Decimal]]]] = {}  # account -> its latest valuation

    def valued(self, account: str, equity: Decimal, held: list[tuple[str, Decimal]]) -> None:
        """``account`` was just valued at ``equity`` (>= 0) holding ``held``: (market, size != 0) pairs."""
        self._noted[account] = (equity, held)

    def unchecked(self, account: str, markets: Iterable[str]) -> None:
        """``account`` was not valued (its liquidation held back): any re-mark of ``markets`` values it."""
        self._noted[account] = (ZERO, [(market, ONE) for market in markets])

    def remarked(self, market: str, unit: Decimal, holders: Collection[str]) -> list[str]:
        """The holders to value after ``market``'s unit value became ``unit``.

        A market's first unit value (nothing to measure travel from) values every holder.
        """
        self._enter_noted()
        before = self._unit.get(market)
        self._unit[market] = unit
        if before is None:
            return list(holders)
        moved = _UP.subtract(max(unit, before), min(unit, before))
        travel = self._travel[market] = _UP.add(self._travel.get(market, ZERO), moved)
        due, version, found = self._due.get(market, []), self._version, []
        while due and due[0][0] <= travel:
            _, account, stamped = heapq.heappop(due)
            if version.get(account) == stamped:
                found.append(account)
        if len(due) > 2 * len(holders) + 1024:  # mostly superseded entries: keep those in force
            kept = [entry for entry in due if version.get(entry[1]) == entry[2]]
            heapq.heapify(kept)
            self._due[market] = kept
        return found

    def _enter_noted(self) -> None:
        """Each noted valuation replaces the account's entries: one per market held."""
        versions, travels, heaps, push, divide, add = (
            self._version, self._travel, self._due, heapq.heappush, _DOWN.divide, _DOWN.add)
        for account, (equity, held) in self._noted.items():
            version = versions[account] = versions.get(account, 0) + 1
            share = divide(equity, len(held)) if held and equity > ZERO else ZERO
            for market, size in held:
                travel = travels.get(market, ZERO)
                push(heaps.setdefault(market, []), (add(travel, divide(share, abs(size))) if share else travel, account, version))
        self._noted.clear()
