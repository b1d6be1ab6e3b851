"""The loss-policy lab: a seeded population through real crash tapes, one scratch store per run.

``tape`` reads the 1-minute candles, ``population`` builds the members and their setup
commands (the model), ``runner`` drives each (window, policy) run in its own SQLite file in
a temporary directory, ``metrics`` folds a run's event log into the measures, and
``outputs`` writes them (CSV, JSON, PNG). The command is ``clearing lab loss-policies``
(``cli/lab.py``); the model, the definitions and a results table are in docs/loss-policies.md.
Randomness lives here, at the boundary, never in the domain.
"""
