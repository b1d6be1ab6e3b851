"""Where projections live: SQL tables beside the event store, with the library's tracking.

The projection tables share the event store's database: the same SQLite file (one file
for an operator to keep) or the same PostgreSQL schema. They are SQLAlchemy Core tables;
each projection's position in the event log is a tracking record written by
``eventsourcing_sqlalchemy``'s ``SQLAlchemyTrackingRecorder`` in the same transaction as
the rows it covers, so an event is applied exactly once (ADR 0009).

Exact numbers: ``ExactDecimal`` is PostgreSQL ``NUMERIC`` (exact) and SQLite ``TEXT``
holding the canonical string (SQLite's own NUMERIC is a float and loses digits). Values are
written canonically (``fmt``: no exponent, no trailing zeros) on both, so a table read
back from either database, or rebuilt from the log, compares equal value by value.

Generations: a projection's tables are named ``<projection>_<table>_g<N>``; the registry
row names the generation readers use. A rebuild fills generation N+1 while N stays live,
then switches the registry row and drops N in one transaction.
"""

from __future__ import annotations

import os
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, InternalError, ProgrammingError
from eventsourcing_sqlalchemy.datastore import SQLAlchemyDatastore
from eventsourcing_sqlalchemy.recorders import SQLAlchemyTrackingRecorder
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, Text, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import NUMERIC, TypeDecorator

from clearing.money import fmt
from clearing.pg_probe import connect_arguments
from clearing.settings import is_postgres, sqlite_read_uri, store_env

CREATE_ATTEMPTS = 8

# eventsourcing_sqlalchemy defines one ORM class per tracking table and SQLAlchemy warns
# that a class of that name is re-registered; the tables are distinct, so this is noise.
warnings.filterwarnings("ignore", message=".*NotificationTrackingRecord.*")


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal column that never loses a digit: NUMERIC on PostgreSQL, TEXT on SQLite."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(NUMERIC())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        text_value = fmt(value)
        return Decimal(text_value) if dialect.name == "postgresql" else text_value

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(fmt(value)) if isinstance(value, Decimal) else Decimal(value)


def sqlalchemy_url(db: str, read_only: bool = False) -> tuple[str, dict[str, Any]]:
    """SQLAlchemy URL and engine arguments for the ``--db`` setting (file path or PG URL);
    ``read_only`` opens an SQLite file as ``clearing.settings.sqlite_read_uri`` says."""
    if is_postgres(db):
        env = store_env(db)
        # every parameter as the library's pool and the probe connect with (clearing.pg_probe);
        # libpq takes the rest (sslmode, ...) from the PG* variables clearing.settings exported
        connect_args: dict[str, Any] = connect_arguments(env)
        if env.get("POSTGRES_SCHEMA"):
            options = os.environ.get("PGOPTIONS", "")  # an explicit options argument replaces PGOPTIONS
            connect_args["options"] = f"{options} -csearch_path={env['POSTGRES_SCHEMA']}".strip()
        return "postgresql+psycopg://", {"connect_args": connect_args, "pool_pre_ping": True}
    if db == ":memory:":
        return "sqlite:///:memory:", {"poolclass": StaticPool}
    if read_only:
        return f"sqlite:///{sqlite_read_uri(db)}&uri=true", {"connect_args": {"timeout": 60}}
    return f"sqlite:///{Path(db).expanduser().resolve()}", {"connect_args": {"timeout": 60}}


class ProjectionStore:
    """The database holding projection tables, their tracking records and the registry.

    ``read_only``: for readers (queries, reports, ``audit verify``): nothing is created, and an
    SQLite file is opened so that it cannot be written (``sqlite_read_uri``).
    """

    def __init__(self, db: str, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only
        url, engine_args = sqlalchemy_url(db, read_only)
        self.datastore = SQLAlchemyDatastore(url=url, **engine_args)
        assert isinstance(self.datastore.engine, Engine)  # built from a URL: an Engine, not a Connection
        self.engine: Engine = self.datastore.engine
        self.dialect = self.engine.dialect.name
        self.metadata = MetaData()
        self.registry = Table(
            "projection_registry",
            self.metadata,
            Column("name", String(64), primary_key=True),
            Column("generation", Integer, nullable=False),
        )
        self._trackers: dict[str, SQLAlchemyTrackingRecorder] = {}
        if not read_only:
            self._create(lambda: self.registry.create(self.engine, checkfirst=True))
            self.datastore.init_sqlite_wal_mode()

    # -- tables -------------------------------------------------------------------------

    def table(self, name: str, columns: list[Column[Any]], generation: int) -> Table:
        """The generation's table, defined once per store object."""
        full = f"{name}_g{generation}"
        if full in self.metadata.tables:
            return self.metadata.tables[full]
        return Table(full, self.metadata, *[column._copy() for column in columns])

    def create_tables(self, tables: list[Table]) -> None:
        if not self.read_only:
            self._create(lambda: self.metadata.create_all(self.engine, tables=tables, checkfirst=True))

    def missing_columns(self, tables: list[Table]) -> list[str]:
        """``table.column`` names the stored tables lack: tables built by an older version.

        ``CREATE TABLE IF NOT EXISTS`` leaves an existing table as it was, and no DDL
        alters one (no ``ALTER TABLE``): a projection whose columns changed is rebuilt
        into a new generation instead (``clearing projections rebuild NAME``).
        """
        inspector = inspect(self.engine)
        missing = []
        for table in tables:
            stored = {column["name"] for column in inspector.get_columns(table.name)}
            missing += [f"{table.name}.{column.name}" for column in table.columns if column.name not in stored]
        return missing

    @staticmethod
    def tracking_table(projection: str, generation: int) -> str:
        """Name of a projection generation's tracking table (the library's record class)."""
        return f"{projection}_g{generation}_tracking"

    def tracker(self, projection: str, generation: int) -> SQLAlchemyTrackingRecorder:
        """The library's tracking recorder of one projection generation."""
        key = self.tracking_table(projection, generation)
        if key not in self._trackers:
            recorder = SQLAlchemyTrackingRecorder(datastore=self.datastore, tracking_table_name=key)
            if not self.read_only:
                self._create(recorder.create_table)
            self._trackers[key] = recorder
        return self._trackers[key]

    def drop_generation(self, session: Any, tables: list[Table], projection: str, generation: int) -> None:
        for table in tables:
            session.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            self.metadata.remove(table)
        key = self.tracking_table(projection, generation)
        session.execute(text(f'DROP TABLE IF EXISTS "{key}"'))
        self._trackers.pop(key, None)

    # -- stable names -------------------------------------------------------------------

    @staticmethod
    def view_name(table: Table) -> str:
        """The stable name of a generation's table: ``margin_accounts_g3`` -> ``margin_accounts``."""
        name, _, generation = table.name.rpartition("_g")
        assert generation.isdigit(), table.name
        return name

    def point_views(self, session: Any, tables: list[Table]) -> None:
        """Make each table's stable view (``view_name``) select from this generation's table.

        Readers who query with SQL use the views: their names never change, while a rebuild
        fills a new generation and switches the views to it in the transaction that drops the
        old tables (PostgreSQL refuses to drop a table a view still reads, so the views move
        first). Example: after ``clearing projections rebuild margin`` the view
        ``margin_accounts`` reads ``margin_accounts_g2``; the SQL a regulator wrote still runs.
        """
        for table in tables:
            view = self.view_name(table)
            session.execute(text(f'DROP VIEW IF EXISTS "{view}"'))
            session.execute(text(f'CREATE VIEW "{view}" AS SELECT * FROM "{table.name}"'))

    def missing_views(self, tables: list[Table]) -> list[Table]:
        """The tables whose stable view does not exist yet (a store built before the views)."""
        views = set(inspect(self.engine).get_view_names())
        return [table for table in tables if self.view_name(table) not in views]

    # -- registry ---------------------------------------------------------------------

    def generation(self, projection: str, session: Any | None = None) -> int | None:
        """The live generation of ``projection``; None before it was first built (a
        read-only store that never had projections has no registry: None too)."""
        if self.read_only and session is None and not inspect(self.engine).has_table(self.registry.name):
            return None
        query = select(self.registry.c.generation).where(self.registry.c.name == projection)
        generation: int | None
        if session is not None:
            generation = session.execute(query).scalar()
            return generation
        with self.engine.connect() as connection:
            generation = connection.execute(query).scalar()
            return generation

    def set_generation(self, session: Any, projection: str, generation: int) -> None:
        updated = session.execute(
            self.registry.update().where(self.registry.c.name == projection).values(generation=generation)
        ).rowcount
        if not updated:
            session.execute(self.registry.insert().values(name=projection, generation=generation))

    def lock(self, session: Any) -> None:
        """Serialize projection writers across processes for the rest of the transaction.

        PostgreSQL: a transaction-scoped advisory lock. SQLite: a write to the registry as the
        transaction's first statement takes the database's write lock (WAL: one writer), so
        the tracking positions read next are the latest committed ones.
        """
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(7202611)"))
            return
        touched = session.execute(
            self.registry.update().where(self.registry.c.name == "__lock__").values(generation=0)
        ).rowcount
        if not touched:
            session.execute(self.registry.insert().values(name="__lock__", generation=0))

    def _create(self, create: Any) -> None:
        """DDL retried when processes race to create the same tables (PostgreSQL)."""
        for attempt in range(CREATE_ATTEMPTS):
            try:
                create()
                return
            except (SQLAlchemyError, IntegrityError, InternalError, ProgrammingError):
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()
