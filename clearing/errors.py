"""One small typed hierarchy of ledger errors, and the registry of their codes.

Every rejection carries a stable machine ``code``, the ``field`` of the command (or option)
it is about, and a one-line human message. A rejected command writes nothing. Every code is
registered once in :data:`REGISTRY` (code, the error class that carries it, where it arises,
what it means); ``docs/errors.md`` is generated from it (``python -m clearing.errors``), and
``tests/unit/test_error_registry.py`` checks that the codes raised, the registry, the docs
and the bad-input catalogue (``tests/unit/test_bad_input_catalogue.py``) agree.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


class ClearingError(Exception):
    """A command was rejected. Nothing was written."""

    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        if code not in REGISTRY:  # a bug, found by the test suite (tests/conftest.py fails the run)
            UNREGISTERED.add(code)
        self.code = code
        self.field = field
        text = " ".join(message.split())  # always one line
        self.message = f"{field}: {text}" if field and field not in text else text

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InputError(ClearingError):
    """The command itself is malformed: wrong shape, type or number format."""


class NotFoundError(ClearingError):
    """The command names an account or market that does not exist."""


class RuleError(ClearingError):
    """The command is well formed but breaks a ledger rule given the current state."""


class ConflictError(ClearingError):
    """The command id was used before with different content, or retries ran out."""


class StoreError(ClearingError):
    """The store cannot be used: unreachable, refused, read-only where a write is needed."""


class InvariantViolation(AssertionError):
    """A ledger invariant does not hold. Never caught: it means a bug, so stop."""


#: Where a code arises: a JSON Lines command (``post`` and every command-line command), a
#: command-line option or argument, the store and its projections, export / import / replay,
#: the regulator reports, the lab.
SURFACES = ("command", "option", "store", "transfer", "report", "api", "lab")


@dataclass(frozen=True)
class ErrorCode:
    """One registered code: the class that carries it, where it arises, and what it means."""

    code: str
    kind: str  # InputError, NotFoundError, RuleError, ConflictError, StoreError or ProjectionError
    surface: str
    meaning: str


def _codes(*rows: tuple[str, str, str, str]) -> dict[str, ErrorCode]:
    registry: dict[str, ErrorCode] = {}
    for code, kind, surface, meaning in rows:
        assert code not in registry, f"{code} registered twice"
        assert surface in SURFACES, f"{code}: unknown surface {surface}"
        registry[code] = ErrorCode(code, kind, surface, meaning)
    return registry


_I, _N, _R, _C, _P = "InputError", "NotFoundError", "RuleError", "ConflictError", "ProjectionError"

#: Every error code, by code. The order is the docs' order.
REGISTRY: dict[str, ErrorCode] = _codes(
    # -- the line itself
    ("malformed_json", _I, "command", "the line is not valid JSON"),
    ("not_an_object", _I, "command", "the line is JSON but not an object"),
    ("line_too_long", _I, "command", "the line is longer than the 64 KiB a command may take"),
    ("invalid_utf8", _I, "command", "the line's bytes are not UTF-8 (the other lines are still read)"),
    ("duplicate_key", _I, "command", "a key appears twice in one object, at any depth (never last-one-wins)"),
    ("invalid_unicode", _I, "command", "a lone surrogate escape such as \\ud800 anywhere in the line"),
    ("nesting_too_deep", _I, "command", "objects and arrays nest deeper than 8 levels, or too deep to parse"),
    ("missing_field", _I, "command", "a required field is absent"),
    ("unknown_type", _I, "command", "the command type is not one of the command types"),
    ("unknown_field", _I, "command", "a field that is not part of this command type"),
    ("invalid_value", _I, "command", "a field of the wrong JSON type, or a value not among the allowed ones"),
    ("invalid_id", _I, "command", "an empty or malformed command id"),
    ("invalid_name", _I, "command", "an account, market or officer name that is not 1-64 letters, digits and _ . : @ -"),
    ("invalid_time", _I, "command", "a business time that is not ISO-8601 with a time zone"),
    ("time_out_of_range", _I, "command", "a business time outside [1970-01-01, 2200-01-01) UTC"),
    ("time_in_future", _I, "command", "a business time more than CLEARING_MAX_FUTURE_SKEW seconds after the clock"),
    ("time_before_log", _I, "command", "a business time more than CLEARING_MAX_BACKDATE seconds before the log's latest"),
    ("float_not_allowed", _I, "command", "a number written as a JSON float where a decimal string is required"),
    ("invalid_number", _I, "command", "not a plain decimal number: NaN, infinities, exponents, signs, spaces or text"),
    ("not_positive", _I, "command", "an amount, size or price that must be greater than zero (or a funding rate of 0)"),
    ("negative", _I, "command", "a value that must not be negative"),
    ("too_many_decimals", _I, "command", "more decimals than the asset's or market's quantum allows"),
    ("invalid_fraction", _I, "command", "a margin fraction outside (0, 1]"),
    ("rate_out_of_range", _I, "command", "a funding rate of 100 % or more in magnitude"),
    ("unknown_parameter", _I, "command", "set_parameters names a parameter that does not exist"),
    ("id_conflict", _C, "command", "the command id was used before with different content"),
    # -- what the command names
    ("account_not_found", _N, "command", "the account does not exist"),
    ("market_not_found", _N, "command", "the market does not exist"),
    ("account_exists", _R, "command", "open_account of an account that exists"),
    ("account_closed", _R, "command", "the account is closed"),
    ("account_not_empty", _R, "command", "close_account of an account that still holds collateral"),
    ("account_not_flat", _R, "command", "close_account of an account that holds a position"),
    ("market_exists", _R, "command", "create_market of a market that exists"),
    ("market_closed", _R, "command", "the market is closed to trading"),
    ("market_expired", _R, "command", "a trade in a future at or after its expiry"),
    ("market_settled", _R, "command", "the future has settled: it takes no more prices, trades or funding"),
    # -- money and margin
    ("insufficient_collateral", _R, "command", "a withdrawal of more than the account's collateral"),
    ("insufficient_free_collateral", _R, "command", "a withdrawal that would leave the account below initial margin"),
    ("insufficient_margin", _R, "command", "a trade that would leave the buyer or seller below initial margin"),
    ("self_trade", _R, "command", "the buyer and the seller (or the liquidator and the account) are the same"),
    # -- market terms and prices
    ("no_mark_price", _R, "command", "the market has no mark price yet"),
    ("size_off_step", _R, "command", "a size that is not a multiple of the market's step size"),
    ("price_off_tick", _R, "command", "a price that is not a multiple of the market's tick size"),
    ("trade_price_outside_band", _R, "command", "a trade price further than price_band from the mark"),
    ("price_outside_band", _R, "command", "a mark price further than price_band from the last mark"),
    ("stale_time", _R, "command", "a mark price with a business time before the market's last mark"),
    ("unknown_source", _R, "command", "a price from a source the market's oracle_sources do not list"),
    ("source_required", _R, "command", "a price without a source on a market marked by the median of its sources"),
    ("invalid_margin_fractions", _R, "command", "a maintenance margin fraction above the initial one"),
    ("invalid_tiers", _R, "command", "margin tiers that do not start at 0 or do not rise"),
    ("incompatible_quanta", _R, "command", "tick x step finer than the collateral quantum"),
    ("expiry_required", _R, "command", "a future without an expiry"),
    ("expiry_not_allowed", _R, "command", "a perpetual with an expiry"),
    ("expiry_in_past", _R, "command", "a future whose expiry has passed"),
    ("not_a_future", _R, "command", "settle of a perpetual"),
    ("not_expired", _R, "command", "settle before the future's expiry"),
    ("not_a_perpetual", _R, "command", "funding on a future"),
    ("parameter_out_of_range", _R, "command", "a risk parameter outside its allowed range or set of names"),
    # -- liquidation
    ("account_healthy", _R, "command", "a manual liquidation of an account not below maintenance margin"),
    ("no_position", _R, "command", "a manual liquidation of a market the account holds no position in"),
    ("size_exceeds_position", _R, "command", "a manual liquidation of more than the position"),
    ("liquidations_paused", _R, "command", "a manual liquidation while liquidations are paused in the market"),
    ("liquidator_undercapitalized", _R, "command",
     "a manual liquidation to a liquidator that would not meet initial margin or liquidator_position_cap afterwards"),
    ("price_out_of_band", _R, "command",
     "a manual liquidation price further than manual_liquidation_band from the mark without the officers' approval"),
    ("deficit_without_payer", _R, "command",
     "a manual liquidation price that leaves a deficit the fund cannot pay and no open position to bear it"),
    # -- governance
    ("unknown_officer", _R, "command", "an approval by, or naming, an officer who is not registered"),
    ("duplicate_approval", _R, "command", "the officer already approved this exact change"),
    ("approver_not_operator", _R, "command", "an approval posted by someone other than the approving officer"),
    ("approval_expired", _R, "command", "the approvals are older than approval_ttl"),
    ("quorum_not_met", _R, "command", "fewer than approvals_required officers approved this exact change"),
    ("timelock_pending", _R, "command", "a change of the approval threshold inside its timelock"),
    ("officer_exists", _R, "command", "register_officer of an officer already registered"),
    ("officers_full", _R, "command", "more officers than officers_max"),
    ("already_paused", _R, "command", "pause of what is already paused"),
    ("not_paused", _R, "command", "resume of what is not paused"),
    ("trading_paused", _R, "command", "a trade while trading is paused"),
    # -- access tokens (ADR 29)
    ("invalid_sha256", _I, "command", "a token_sha256 that is not 64 lowercase hexadecimal digits"),
    ("token_exists", _R, "command", "issue_token of a name already issued (names are never reused)"),
    ("token_not_found", _N, "command", "revoke_token of a name never issued"),
    ("token_revoked", _R, "command", "revoke_token of a token already revoked"),
    # -- options and arguments of the command line
    ("store_not_found", _N, "option", "a read of a store that does not exist (no event store at --db / CLEARING_DB)"),
    ("store_read_only", "StoreError", "store",
     "a read-only SQLite copy whose write-ahead log holds transactions this user cannot read without writing"),
    ("store_unreachable", "StoreError", "store", "the event store cannot be opened: server down, refused, bad file (exit 3)"),
    ("auth_failed", "StoreError", "store", "PostgreSQL refused the user: no such role, wrong password, no pg_hba entry"),
    ("database_missing", "StoreError", "store", "PostgreSQL has no database of the name in --db"),
    ("connection_refused", "StoreError", "store", "nothing accepts connections at the host and port in --db"),
    ("host_unknown", "StoreError", "store", "the host name in --db does not resolve"),
    ("host_unreachable", "StoreError", "store", "the network has no route to the host in --db"),
    ("connect_timeout", "StoreError", "store", "PostgreSQL did not answer within POSTGRES_CONNECT_TIMEOUT seconds"),
    ("ssl_failed", "StoreError", "store", "the SSL that sslmode in --db (or PGSSLMODE) asks for cannot be set up: the "
     "server does not support SSL, or its certificate cannot be verified"),
    ("store_failed", "StoreError", "store", "the event store failed during the command; nothing of the failed batch was "
     "reported (exit 3)"),
    ("io_failed", "StoreError", "store", "a file the command reads or writes cannot be used (exit 3)"),
    ("interrupted", "StoreError", "store", "the command was interrupted (Ctrl-C; exit 130): committed batches stay"),
    ("internal_error", "StoreError", "store", "a bug: the message names the exception; --debug prints the traceback (exit 70)"),
    ("invalid_db", _I, "option",
     "a --db / CLEARING_DB that is neither a file path in an existing directory nor a PostgreSQL URL"),
    ("invalid_operator", _I, "option", "an --as / CLEARING_OPERATOR that is not a name"),
    ("demo_store_not_empty", _I, "option", "`clearing demo` into a store that already holds events, without --force"),
    ("invalid_setting", _I, "option", "an environment setting that is not a whole number of seconds in range"),
    ("invalid_until", _I, "option", "--until / --as-of neither a positive log position nor an ISO-8601 time with zone"),
    ("invalid_digest", _I, "option", "a digest not of the form audit digest prints"),
    ("digest_mismatch", "StoreError", "store", "`audit combine --expect`: the combined digest is not the one expected (exit 4)"),
    ("invalid_partition", _I, "option", "a partition name for `audit combine` that is not 1-64 letters, digits, _ . -"),
    ("unreadable_event", _I, "store", "an `events` listing reached a stored event that cannot be decoded (an edited row)"),
    ("retries_exhausted", _C, "store", "the store kept refusing a batch (conflicting writers) after every attempt"),
    # -- projections
    ("unknown_projection", _P, "store", "a projection name not in the list (or chain for rebuild)"),
    ("projection_missing", _P, "store", "the projection's tables have not been built"),
    ("projection_behind", _P, "store", "the projection has not reached the position a report needs"),
    ("projection_outdated", _P, "store", "the projection's tables were built by an older version: rebuild it"),
    ("projection_not_committed", _P, "store", "the projection's catch-up did not commit what it applied"),
    ("follower_running", _P, "store", "another `projections follow` already follows this store"),
    # -- export, import, replay
    ("export_state_not_text", _I, "transfer", "an event whose stored state is not UTF-8 text"),
    ("import_malformed", _I, "transfer", "a line of the import file that is not the expected JSON object"),
    ("import_unsupported", _I, "transfer", "an export of another format or version"),
    ("import_chain_broken", _I, "transfer", "a line whose hash does not follow from its fields and the previous hash"),
    ("import_file_changed", _I, "transfer", "the file changed between the verifying pass and the writing pass"),
    ("store_not_empty", _I, "transfer", "an import into a store that holds events that are not a prefix of the file"),
    ("target_exists", _I, "transfer", "audit replay --into an existing file or a schema that holds tables"),
    ("invalid_target", _I, "transfer", "a replay target that cannot be used: no ?schema=, unreachable, no such directory"),
    ("replay_in_progress", _I, "transfer", "another audit replay into the same PostgreSQL schema is running"),
    # -- reports
    ("unknown_report", _I, "report", "a report name that is not one of the reports"),
    ("invalid_date", _I, "report", "a --date that is not a day written YYYY-MM-DD"),
    ("date_outside_log", _I, "report", "a --date before the log's first business day or after its last (or an empty log)"),
    ("invalid_shock", _I, "report", "--shock not a comma-separated list of numbers, or too many"),
    ("invalid_prices", _I, "report", "a --prices file without a header row with a close or price column"),
    ("unreadable_prices", _I, "report", "a --prices file that cannot be read"),
    ("not_applicable", _I, "report", "an option the chosen report does not take"),
    ("invalid_output", _I, "report", "an --output that is a directory, in a directory that does not exist, or (a chart) "
     "not .svg or .png"),
    ("unknown_chart", _I, "report", "a chart name that is not one of the charts (`clearing chart --help`)"),
    ("invalid_window", _I, "report", "a chart's days: neither --date nor --from and --to, both, --to before --from, "
     "or more than 366 days"),
    # -- the HTTP API (clearing serve)
    ("unauthorized", "ApiError", "api", "a request without a token (Authorization: Bearer, or the dashboard's login) (401)"),
    ("invalid_token", "ApiError", "api", "a token this ledger never issued (401)"),
    ("revoked_token", "ApiError", "api", "a token that was revoked (`clearing tokens revoke`) (401)"),
    ("forbidden_role", "ApiError", "api", "a token whose role may not read (operator, oracle, risk_officer) (403)"),
    ("not_found", "ApiError", "api", "a path the API does not have (404)"),
    ("method_not_allowed", "ApiError", "api", "a method other than GET (the API only reads) (405)"),
    ("event_not_found", "ApiError", "api", "/events/{position} beyond the head of the log (404)"),
    ("address_in_use", "Failure", "api", "`clearing serve` on a port something already listens on (exit 3)"),
    ("address_unusable", "Failure", "api", "`clearing serve` on a host it cannot listen on: not an address of this machine "
     "(exit 3)"),
    ("http_error", "ApiError", "api", "any other refusal by the HTTP layer, with its status"),
    # -- the lab
    ("tape_not_found", _I, "lab", "a --tape that cannot be read"),
    ("tape_malformed", _I, "lab", "a --tape that is not a CSV of 1-minute candles in time order"),
)

#: Codes constructed while not registered (a bug: tests/conftest.py fails the test run).
UNREGISTERED: set[str] = set()

_SURFACE_TITLES = {
    "command": "Commands (JSON Lines and every command-line command)",
    "option": "Command-line options and settings",
    "store": "The store and its projections",
    "transfer": "Export, import and replay",
    "report": "Regulator reports and charts",
    "api": "The HTTP API (`clearing serve`): the other refusals carry the codes above, with a status by class",
    "lab": "The loss-policy lab",
}


def markdown() -> str:
    """``docs/errors.md``: the registry as tables, one per surface."""
    lines = [
        "# Error codes",
        "",
        "Generated from `clearing/errors.py` (`REGISTRY`) by `python -m clearing.errors > docs/errors.md`;",
        "`tests/unit/test_error_registry.py` fails when this file is not current. Every rejection prints",
        "`error: [code] field: message` on one line, exits non-zero and writes nothing. Each command",
        "code has a case in `tests/unit/test_bad_input_catalogue.py` or, where named there, a test of",
        "its own.",
    ]
    for surface in SURFACES:
        lines += ["", f"## {_SURFACE_TITLES[surface]}", "", "| code | class | meaning |", "|---|---|---|"]
        lines += [f"| `{e.code}` | {e.kind} | {e.meaning} |" for e in REGISTRY.values() if e.surface == surface]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
