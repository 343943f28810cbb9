"""Projection tables (PostgreSQL through SQLAlchemy asyncio + asyncpg) and their migrations.

Every projection table lives in one schema (default `yf`). The ledger writes rows and the
`projection_tracking` position in the same transaction (exactly-once projection); a rebuild
replays the log into a fresh schema and swaps it in.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from sqlalchemy import JSON, BigInteger, Column, DateTime, Float, Integer, MetaData, Numeric, String, Table, Text, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SCHEMA = "yf"
metadata = MetaData()


def Money(name: str, **kw: Any) -> Column:
    """USD as NUMERIC, read back as Decimal: money is never a float (docs/costs.md)."""
    return Column(name, Numeric(24, 12, asdecimal=True), nullable=False, server_default="0", **kw)


projects = Table(
    "projects", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("repo_path", Text, nullable=False),
    Column("target_branch", String(200), nullable=False, server_default="main"),
    Column("created_at", String(40), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("plan_name", Text, nullable=False),
    Column("status", String(20), nullable=False),  # running | completed | failed | cancelled
    Column("repo_path", Text, nullable=False),
    Column("target_branch", String(200), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("counts", JSON, nullable=False, server_default="{}"),
    Column("stats", JSON, nullable=False, server_default="{}"),
    Column("reason", Text, nullable=False, server_default=""),
    Money("cost_usd"),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=False, server_default=""),
)

epics = Table(
    "epics", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("depends_on", JSON, nullable=False),
    Column("position", Integer, nullable=False),
)

tasks = Table(
    "tasks", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("epic_id", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("depends_on", JSON, nullable=False),
    Column("dependency_type", String(10), nullable=False),
    Column("domain", String(40), nullable=False),
    Column("complexity", String(10), nullable=False),
    Column("batch", Integer, nullable=False, server_default="0"),
    Column("position", Integer, nullable=False),
    # pending | ready | running | done | failed | blocked | cancelled
    Column("status", String(20), nullable=False, server_default="pending"),
    # "" | merged | conflict | resolving (a resolution agent is at work)
    Column("merge_status", String(20), nullable=False, server_default=""),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("model", String(100), nullable=False, server_default=""),
    Column("branch", Text, nullable=False, server_default=""),
    Column("worktree", Text, nullable=False, server_default=""),
    Column("commit", String(64), nullable=False, server_default=""),
    Column("merge_commit", String(64), nullable=False, server_default=""),
    Column("summary", Text, nullable=False, server_default=""),
    Column("reason", Text, nullable=False, server_default=""),
    Money("cost_usd"),
    Column("started_at", String(40), nullable=False, server_default=""),
    Column("finished_at", String(40), nullable=False, server_default=""),
)

parallel_batches = Table(
    "parallel_batches", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("batch", Integer, primary_key=True),
    Column("task_ids", JSON, nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),  # pending | merged
)

worktrees = Table(
    "worktrees", metadata,
    Column("path", Text, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("task_id", String(200), nullable=False),
    Column("branch", Text, nullable=False),
    Column("base_commit", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # active | merged
    Column("created_at", String(40), nullable=False),
)

attempts = Table(
    "attempts", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("model", String(100), nullable=False, server_default=""),
    Column("provider", String(100), nullable=False, server_default=""),
    Column("purpose", String(20), nullable=False, server_default="task"),  # task | resolve_conflict
    Column("outcome", String(20), nullable=False, server_default="running"),
    Column("summary", Text, nullable=False, server_default=""),
    Column("error", Text, nullable=False, server_default=""),
    Column("commit", String(64), nullable=False, server_default=""),
    Column("turns", Integer, nullable=False, server_default="0"),
    Column("duration_s", Float, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Money("cost_usd"),
    Column("started_at", String(40), nullable=False, server_default=""),
    Column("finished_at", String(40), nullable=False, server_default=""),
)

merges = Table(
    "merges", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("task_id", String(200), nullable=False),
    Column("branch", Text, nullable=False),
    Column("target_branch", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # merged | up_to_date | conflict
    Column("commit", String(64), nullable=False, server_default=""),
    Column("conflicts", JSON, nullable=False, server_default="[]"),
    Column("occurred_at", String(40), nullable=False),
)

agent_costs = Table(
    "agent_costs", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("task_id", String(200), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("model", String(100), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Money("cost_usd"),
    Column("occurred_at", String(40), nullable=False),
)

expertise_files = Table(
    "expertise_files", metadata,
    Column("project_id", String(64), primary_key=True),
    Column("domain", String(40), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("lines", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)

event_log = Table(  # a readable index of the log for the UI timeline and `status`
    "event_log", metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("project_id", String(64), nullable=False, index=True),
    Column("run_id", String(64), nullable=False, server_default="", index=True),
    Column("type", String(60), nullable=False),
    Column("aggregate", String(20), nullable=False),
    Column("aggregate_id", String(300), nullable=False),
    Column("occurred_at", String(40), nullable=False),
    Column("data", JSON, nullable=False),
    Column("projected_at", DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")),
)

projection_tracking = Table(
    "projection_tracking", metadata,
    Column("projection", String(60), primary_key=True),
    Column("last_stream_seq", BigInteger, nullable=False),
    Column("stream", String(200), nullable=False, server_default=""),  # the log's identity: name and creation time
)

budget_alerts = Table(
    "budget_alerts", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("level", String(20), primary_key=True),  # warning | exhausted
)

# ------------------------------------------------------------------------ migrations
# Each migration runs once per schema, in order, inside one transaction under an advisory lock.
# A new table or column is a new entry; existing entries never change.
MIGRATIONS: list[tuple[int, str]] = [
    (1, "initial projection tables"),
    (2, "attempts.purpose: the task's work or a conflict resolution"),
    (3, "event_log.projected_at (projection lag) and projection_tracking.stream (a recreated stream replays)"),
    (4, "money as NUMERIC: cost_usd of runs, tasks, attempts and agent_costs"),
]
MONEY_COLUMNS = [("runs", "cost_usd"), ("tasks", "cost_usd"), ("attempts", "cost_usd"), ("agent_costs", "cost_usd")]


def engine_for(url: str) -> AsyncEngine:
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    return create_async_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


# Service roles and what each may do on the projection schema (roles that do not exist on a server
# are skipped: an existing server's operator may use other names and grant them alike).
ROLE_GRANTS = {"yf_ledger": "SELECT, INSERT, UPDATE, DELETE", "yf_gateway": "SELECT", "yf_cli": "SELECT"}


async def migrate(engine: AsyncEngine, schema: str = SCHEMA) -> int:
    """Bring `schema` up to the latest migration; returns the version it is at. A service role
    (no DDL rights) passes when the schema is already current, and is told who must migrate if not."""
    latest = MIGRATIONS[-1][0]
    async with engine.connect() as conn:
        current = await _schema_version(conn, schema)
        owner = (await conn.execute(text(
            "SELECT has_database_privilege(current_database(), 'CREATE')"))).scalar_one()
    if current >= latest and not owner:
        return current
    if not owner:
        raise PermissionError(f"the projection schema {schema!r} is at version {current} and needs {latest}: "
                              f"run YokeFlow once with the database owner's URL (migrations need it)")
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": f"yokeflow-migrate-{schema}"})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.execute(text(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_version (version INTEGER PRIMARY KEY, '
            f"description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"))
        current = (await conn.execute(text(f'SELECT coalesce(max(version), 0) FROM "{schema}".schema_version'))).scalar_one()
        for version, description in MIGRATIONS:
            if version <= current:
                continue
            await _apply_migration(conn, version, schema)
            await conn.execute(text(f'INSERT INTO "{schema}".schema_version (version, description) VALUES (:v, :d)'),
                               {"v": version, "d": description})
            current = version
        await _grant(conn, schema)
        return current


async def applied_version(engine: AsyncEngine, schema: str = SCHEMA) -> int:
    """The latest migration applied to `schema` (0 before any): readiness compares it with MIGRATIONS."""
    async with engine.connect() as conn:
        return await _schema_version(conn, schema)


async def _schema_version(conn: AsyncConnection, schema: str) -> int:
    exists = (await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"),
                                 {"t": f'"{schema}".schema_version'})).scalar_one()
    if not exists:
        return 0
    try:
        return (await conn.execute(text(f'SELECT coalesce(max(version), 0) FROM "{schema}".schema_version'))).scalar_one()
    except DBAPIError:  # no right to read it: a role without grants here
        await conn.rollback()
        return 0


async def _grant(conn: AsyncConnection, schema: str) -> None:
    roles = set((await conn.execute(text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:r)"),
                                    {"r": list(ROLE_GRANTS)})).scalars())
    for role, rights in ROLE_GRANTS.items():
        if role in roles:
            await conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
            await conn.execute(text(f'GRANT {rights} ON ALL TABLES IN SCHEMA "{schema}" TO {role}'))


async def _apply_migration(conn: AsyncConnection, version: int, schema: str) -> None:
    if version == 1:
        await conn.run_sync(lambda sync: metadata.create_all(
            sync.execution_options(schema_translate_map={None: schema})))
        return
    if version == 2:  # a schema made by version 1 after this column was added to the table already has it
        await conn.execute(text(f'ALTER TABLE "{schema}".attempts ADD COLUMN IF NOT EXISTS purpose '
                                f"VARCHAR(20) NOT NULL DEFAULT 'task'"))
        return
    if version == 3:
        await conn.execute(text(f'ALTER TABLE "{schema}".event_log ADD COLUMN IF NOT EXISTS projected_at '
                                f"TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()"))
        await conn.execute(text(f'ALTER TABLE "{schema}".projection_tracking ADD COLUMN IF NOT EXISTS stream '
                                f"VARCHAR(200) NOT NULL DEFAULT ''"))
        return
    if version == 4:  # floats become exact decimals (an old float keeps the value it showed)
        for table, column in MONEY_COLUMNS:
            await conn.execute(text(f'ALTER TABLE "{schema}".{table} ALTER COLUMN {column} TYPE NUMERIC(24, 12) '
                                    f"USING round({column}::numeric, 12)"))
        return
    raise RuntimeError(f"unknown migration {version}")


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it (without its password)."""


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class Database:
    """An engine bound to the projection schema."""

    def __init__(self, url: str, schema: str = SCHEMA):
        self.url = url
        self.schema = schema
        self.engine = engine_for(url)

    def begin(self):
        return self.engine.begin()

    @contextlib.asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[Any]:
        """A pooled connection's asyncpg connection in a transaction, committed when the block ends
        without an error: for the ledger's set-based writes, without SQLAlchemy's cost per statement."""
        async with self.engine.connect() as conn:
            pg = (await conn.get_raw_connection()).driver_connection
            async with pg.transaction():
                yield pg

    async def execution(self, conn: AsyncConnection) -> AsyncConnection:
        return await conn.execution_options(schema_translate_map={None: self.schema})

    async def migrate(self) -> int:
        try:
            return await migrate(self.engine, self.schema)
        except PermissionError as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {_safe_url(self.url)}: {exc}") from None
        except (OSError, DBAPIError) as exc:
            raise DatabaseUnavailable(f"cannot reach PostgreSQL at {_safe_url(self.url)}: "
                                      f"{getattr(exc, 'orig', None) or exc}") from None

    async def fetch(self, stmt: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(schema_translate_map={None: self.schema})
            result = await conn.execute(stmt)
            return [dict(r._mapping) for r in result]

    async def position(self, projection: str) -> int:
        rows = await self.fetch(projection_tracking.select().where(projection_tracking.c.projection == projection))
        return int(rows[0]["last_stream_seq"]) if rows else 0

    async def projection_lag_ms(self, recent: int = 1000) -> float:
        """Projection lag as one figure: p99 of (row written - event occurred) over the last `recent` events."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(text(
                f"SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM projected_at - "
                f'occurred_at::timestamptz)) FROM (SELECT projected_at, occurred_at FROM "{self.schema}".event_log '
                f"ORDER BY seq DESC LIMIT :n) recent"), {"n": recent})).scalar_one_or_none()
        return round(max(0.0, float(value or 0.0)) * 1000, 1)

    async def wait_for(self, projection: str, seq: int, timeout: float = 30.0) -> None:
        """Read-your-writes: wait until the projection has applied stream sequence `seq`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.position(projection) < seq:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"projection {projection} did not reach sequence {seq} within {timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def dispose(self) -> None:
        await self.engine.dispose()
