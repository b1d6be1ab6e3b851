"""The risk deciders: pure functions the engine and the decision audit both call.

Each module holds one idea and decides from plain values (a ``Holding``, a
``MarkedTerms`` market, ``MarginTotals``, the ``ParameterSet`` in force), never from
the working set or a live aggregate, so the audit can call it on the state it folded
from the recorded facts (ADR 17):

* ``totals``: equity and requirements on marks (``margin_totals``), the protocols;
* ``fill``: the effect of a fill on a position (realized PnL, cost removed);
* ``due``: whether a called account is liquidated now, and the TWAP deferral;
* ``step``: which position, how much, at what price, and the status after;
* ``bankruptcy``: the bankruptcy quote of a step and the fund's draw before deleveraging;
* ``penalty``: the penalty of a fill and the liquidator's share of it;
* ``capacity``: whether a liquidator can carry a takeover.
"""
