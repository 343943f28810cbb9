"""Applies a batch of events to PostgreSQL through asyncpg, set-based: each event's row changes
(services/ledger/projector.py) are folded in log order into one net change per row, then written
as one prepared statement per shape of change (executemany: one round trip for many rows), with
the event log and the tracking position, in the caller's transaction. The result is the rows
that applying the events one at a time gives (tests/integration/test_ledger.py compares them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Awaitable, Callable

import msgspec
from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, Numeric, String, Text

from shared import db
from shared import events as ev
from services.ledger.projector import PROJECTION, Add, Change, Update, UpdateWhere, Upsert, changes

KEYS: dict[str, tuple[str, ...]] = {t.name: tuple(c.name for c in t.primary_key.columns)
                                    for t in db.metadata.tables.values()}
JSON_COLUMNS: dict[str, frozenset[str]] = {t.name: frozenset(c.name for c in t.columns if isinstance(c.type, JSON))
                                           for t in db.metadata.tables.values()}
STEPS: dict[tuple[str, str], Decimal] = {(t.name, c.name): Decimal(1).scaleb(-c.type.scale)
                                         for t in db.metadata.tables.values() for c in t.columns
                                         if isinstance(c.type, Numeric) and c.type.scale is not None}
# a column's array type for unnest: its base type, so a value too long for it fails as a plain insert would
_BASE = {String: "text", Text: "text", BigInteger: "int8", Integer: "int4", Float: "float8", Numeric: "numeric",
         JSON: "text", DateTime: "timestamptz"}
TYPES: dict[str, dict[str, str]] = {t.name: {c.name: next(v for k, v in _BASE.items() if isinstance(c.type, k))
                                             for c in t.columns} for t in db.metadata.tables.values()}
LOG_COLUMNS = ("seq", "event_id", "project_id", "run_id", "type", "aggregate", "aggregate_id", "occurred_at", "data")
_encode = msgspec.json.Encoder().encode

Reader = Callable[[int, int], Awaitable[list[tuple[int, ev.Event]]]]


def _q(name: str) -> str:
    return f'"{name}"'


@dataclass(slots=True)
class _Net:
    """One row's net change so far: what to insert if it is absent (None: nothing), what to set if present."""

    insert: dict[str, Any] | None
    set: dict[str, Any]


class RowWriter:
    """Row changes folded per row (in log order) and written set-based on `flush`."""

    def __init__(self, pg: Any, schema: str):
        self.pg = pg
        self.schema = schema
        self.rows: dict[str, dict[tuple, _Net]] = {}
        self.sums: dict[tuple[str, tuple, str], Decimal] = {}

    async def add(self, change: Change) -> None:
        if isinstance(change, Add):
            at = (change.table, _key(change.table, change.key), change.column)
            # each amount rounded as the column stores it, as one add per event would: the same sum however batched
            amount = change.amount.quantize(STEPS[(change.table, change.column)], rounding=ROUND_HALF_UP)
            self.sums[at] = self.sums.get(at, Decimal(0)) + amount
            return
        if isinstance(change, UpdateWhere):  # not by key: the table's earlier changes are written first
            await self.flush(change.table)
            cols = list(change.values)
            conds = list(change.where)
            await self.pg.execute(
                f"UPDATE {self._table(change.table)} SET "
                + ", ".join(f"{_q(c)} = ${i + 1}" for i, c in enumerate(cols)) + " WHERE "
                + " AND ".join(f"{_q(c)} = ${len(cols) + i + 1}" for i, c in enumerate(conds)),
                *self._params(change.table, cols, change.values), *(change.where[c] for c in conds))
            return
        if isinstance(change, Upsert):
            keys = KEYS[change.table]
            update = [c for c in change.values if c not in keys] if change.update is None else change.update
            new = _Net(dict(change.values), {c: change.values[c] for c in update})
            key = tuple(change.values[k] for k in keys)
        else:
            new = _Net(None, dict(change.values))
            key = _key(change.table, change.key)
        table = self.rows.setdefault(change.table, {})
        old = table.get(key)
        if old is None:
            table[key] = new
            return
        # old then new: a row that was absent holds old's insert with new's sets (or new's insert when
        # old inserts nothing); a row that was there gets both sets, new's last.
        old.insert = {**old.insert, **new.set} if old.insert is not None else new.insert
        old.set.update(new.set)

    async def flush(self, only: str | None = None) -> None:
        """Write the folded changes (of one table, or all): one statement per shape of change, its rows
        as arrays (unnest), so PostgreSQL inserts or updates them all in one go."""
        for name in [only] if only is not None else list(self.rows):
            pending = self.rows.pop(name, None)
            if not pending:
                continue
            shapes: dict[tuple, list] = {}
            odd: list[tuple[tuple, _Net]] = []
            for key, net in pending.items():
                if net.insert is None:
                    if net.set:
                        shapes.setdefault((None, tuple(net.set)), []).append((*key, *net.set.values()))
                elif all(c in net.insert and net.insert[c] == v for c, v in net.set.items()):
                    shapes.setdefault((tuple(net.insert), tuple(net.set)), []).append(tuple(net.insert.values()))
                else:  # sets what it would not insert (an update came before the upsert): a statement of its own
                    odd.append((key, net))
            for (inserted, updated), rows in shapes.items():
                columns = KEYS[name] + updated if inserted is None else inserted
                await self.pg.execute(self._set_statement(name, inserted, updated),
                                      *self._arrays(name, columns, rows))
            for key, net in odd:
                inserted, updated = tuple(net.insert), tuple(net.set)  # type: ignore[arg-type]
                await self.pg.execute(self._statement(name, inserted, updated),
                                      *self._params(name, inserted, net.insert), *self._params(name, updated, net.set))

    async def finish(self) -> None:
        """Everything folded so far, then the sums."""
        await self.flush()
        by_column: dict[tuple[str, str], list[tuple]] = {}
        for (table, key, column), amount in self.sums.items():
            by_column.setdefault((table, column), []).append((*key, amount))
        self.sums.clear()
        for (table, column), rows in by_column.items():
            keys = KEYS[table]
            names = (*keys, column)
            await self.pg.execute(
                f"UPDATE {self._table(table)} AS t SET {_q(column)} = t.{_q(column)} + u.{_q(column)} "
                f"FROM {self._unnest(table, names)} WHERE " + " AND ".join(f"t.{_q(k)} = u.{_q(k)}" for k in keys),
                *self._arrays(table, names, rows))

    def _table(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    @staticmethod
    def _unnest(table: str, columns: tuple[str, ...]) -> str:
        types = TYPES[table]
        return (f"unnest({', '.join(f'${i + 1}::{types[c]}[]' for i, c in enumerate(columns))}) "
                f"AS u({', '.join(map(_q, columns))})")

    def _set_statement(self, name: str, inserted: tuple[str, ...] | None, updated: tuple[str, ...]) -> str:
        keys = KEYS[name]
        as_json = JSON_COLUMNS[name]
        value = lambda c: f"u.{_q(c)}::json" if c in as_json else f"u.{_q(c)}"  # noqa: E731
        if inserted is None:
            return (f"UPDATE {self._table(name)} AS t SET " + ", ".join(f"{_q(c)} = {value(c)}" for c in updated)
                    + f" FROM {self._unnest(name, keys + updated)} WHERE "
                    + " AND ".join(f"t.{_q(k)} = u.{_q(k)}" for k in keys))
        sql = (f"INSERT INTO {self._table(name)} ({', '.join(map(_q, inserted))}) SELECT "
               f"{', '.join(value(c) for c in inserted)} FROM {self._unnest(name, inserted)} "
               f"ON CONFLICT ({', '.join(map(_q, keys))}) ")
        if not updated:
            return sql + "DO NOTHING"
        return sql + "DO UPDATE SET " + ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in updated)

    def _statement(self, name: str, inserted: tuple[str, ...], updated: tuple[str, ...]) -> str:
        keys = KEYS[name]
        sql = (f"INSERT INTO {self._table(name)} ({', '.join(map(_q, inserted))}) VALUES "
               f"({', '.join(f'${i + 1}' for i in range(len(inserted)))}) ON CONFLICT ({', '.join(map(_q, keys))}) ")
        if not updated:
            return sql + "DO NOTHING"
        return sql + "DO UPDATE SET " + ", ".join(f"{_q(c)} = ${len(inserted) + i + 1}" for i, c in enumerate(updated))

    @staticmethod
    def _params(table: str, columns, values: dict[str, Any]) -> list[Any]:
        as_json = JSON_COLUMNS[table]
        return [json.dumps(values[c]) if c in as_json else values[c] for c in columns]

    @staticmethod
    def _arrays(table: str, columns: tuple[str, ...], rows: list[tuple]) -> list[list[Any]]:
        """Rows as one array per column (JSON columns as their text)."""
        as_json = JSON_COLUMNS[table]
        return [[json.dumps(v) for v in column] if c in as_json else list(column)
                for c, column in zip(columns, zip(*rows))]


def _key(table: str, key: dict[str, Any]) -> tuple:
    return tuple(key[k] for k in KEYS[table])


def log_row(seq: int, e: ev.Event) -> tuple:
    """The event's row in `event_log` (its data as the JSON the log holds)."""
    return (seq, e.event_id, e.project_id, getattr(e, "run_id", "") or "", e.type, e.aggregate, e.aggregate_id,
            e.occurred_at, _encode(e).decode())


async def apply_batch(pg: Any, schema: str, batch: list[tuple[int, ev.Event]], read_gap: Reader,
                      stream: str = "") -> list[ev.Event]:
    """Apply events (in log order) exactly once in the caller's transaction on the asyncpg
    connection `pg`, filling any gap, and move the tracking position to the last of them in
    that same transaction. `stream` names the log (see Bus.stream_identity): a position taken
    from another log (a stream deleted and made again) is not trusted, the new log is applied
    from its start. Returns the events of `batch` that were new."""
    tracking = f"{_q(schema)}.projection_tracking"
    row = await pg.fetchrow(f"SELECT last_stream_seq, stream FROM {tracking} WHERE projection = $1 FOR UPDATE",
                            PROJECTION)
    position = int(row[0]) if row else 0
    if row is not None and stream and row[1] and row[1] != stream:
        position = 0
    writer = RowWriter(pg, schema)
    applied: list[ev.Event] = []
    log_rows: list[tuple] = []

    async def one(seq: int, event: ev.Event) -> None:
        for change in changes(event):
            await writer.add(change)
        log_rows.append(log_row(seq, event))

    for seq, event in batch:
        if seq <= position:
            continue
        if seq > position + 1:
            for gap_seq, gap_event in await read_gap(position + 1, seq - 1):
                await one(gap_seq, gap_event)
        await one(seq, event)
        applied.append(event)
        position = seq
    if not applied:
        return []
    await writer.finish()
    # the log last: each row's projected_at (projection lag) is taken as close to the commit as can be
    await pg.execute(
        f"INSERT INTO {_q(schema)}.event_log ({', '.join(LOG_COLUMNS)}) SELECT "
        f"{', '.join(c if c != 'data' else 'data::json' for c in LOG_COLUMNS)} FROM "
        f"{RowWriter._unnest('event_log', LOG_COLUMNS)} ON CONFLICT (seq) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in LOG_COLUMNS[1:]), *[list(c) for c in zip(*log_rows)])
    if stream:
        await pg.execute(f"INSERT INTO {tracking} (projection, last_stream_seq, stream) VALUES ($1, $2, $3) "
                         f"ON CONFLICT (projection) DO UPDATE SET last_stream_seq = $2, stream = $3",
                         PROJECTION, position, stream)
    else:
        await pg.execute(f"INSERT INTO {tracking} (projection, last_stream_seq) VALUES ($1, $2) "
                         f"ON CONFLICT (projection) DO UPDATE SET last_stream_seq = $2", PROJECTION, position)
    return applied
