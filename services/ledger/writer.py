"""Applies a batch of events to PostgreSQL through asyncpg, set-based: each event's row changes
(services/ledger/projector.py) are folded in log order into one net change per row, then written
as one statement per shape of change, its rows as arrays (unnest). Statements on different tables
go out together as one (data-modifying WITH clauses), gated by a compare-and-set of the tracking
position: a batch is usually one round trip, and it writes nothing if the position moved since it
was read. The result is the rows that applying the events one at a time gives
(tests/integration/test_ledger.py compares them)."""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Awaitable, Callable, NamedTuple

import msgspec
from sqlalchemy import JSON, BigInteger, DateTime, Float, Integer, Numeric, String, Text

from shared import db
from shared import events as ev
from services.ledger.projector import PROJECTION, Add, Change, UpdateWhere, Upsert, changes

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
WHERE_GATE, AND_GATE = "/*where gate*/", "/*and gate*/"  # where a statement's rows wait for the gate
_PARAM = re.compile(r"\$(\d+)")

Reader = Callable[[int, int], Awaitable[list[tuple[int, ev.Event]]]]


class Tracked(NamedTuple):
    """The tracking row as stored: its position, the log it is a position in, and whether it exists."""

    seq: int
    stream: str
    exists: bool


class _Sql(NamedTuple):
    table: str
    text: str  # parameters numbered from $1
    args: list[Any]


def _q(name: str) -> str:
    return f'"{name}"'


@dataclass(slots=True)
class _Net:
    """One row's net change so far: what to insert if it is absent (None: nothing), what to set if present."""

    insert: dict[str, Any] | None
    set: dict[str, Any]


class RowWriter:
    """Row changes folded per row (in log order), made into set-based statements by `flush` and `finish`."""

    def __init__(self, schema: str):
        self.schema = schema
        self.rows: dict[str, dict[tuple, _Net]] = {}
        self.sums: dict[tuple[str, tuple, str], Decimal] = {}
        self.out: list[_Sql] = []  # the statements, in the order they must run

    def add(self, change: Change) -> None:
        if isinstance(change, Add):
            at = (change.table, _key(change.table, change.key), change.column)
            # each amount rounded as the column stores it, as one add per event would: the same sum however batched
            amount = change.amount.quantize(STEPS[(change.table, change.column)], rounding=ROUND_HALF_UP)
            self.sums[at] = self.sums.get(at, Decimal(0)) + amount
            return
        if isinstance(change, UpdateWhere):  # not by key: the table's earlier changes are written first
            self.flush(change.table)
            cols = list(change.values)
            conds = list(change.where)
            self.out.append(_Sql(change.table, f"UPDATE {self._table(change.table)} SET "
                                 + ", ".join(f"{_q(c)} = ${i + 1}" for i, c in enumerate(cols)) + " WHERE "
                                 + " AND ".join(f"{_q(c)} = ${len(cols) + i + 1}" for i, c in enumerate(conds))
                                 + AND_GATE,
                                 [*self._params(change.table, cols, change.values), *(change.where[c] for c in conds)]))
            return
        if isinstance(change, Upsert):
            values = change.values  # a projector's own dict, never changed after: held as it is
            if change.update is None:
                keys = KEYS[change.table]
                new = _Net(values, {c: v for c, v in values.items() if c not in keys})
            else:
                new = _Net(values, {c: values[c] for c in change.update})
            key = _key(change.table, values)
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

    def flush(self, only: str | None = None) -> None:
        """The folded changes (of one table, or all) as statements: one per shape of change, its rows
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
                elif net.set.items() <= net.insert.items():  # it sets only what it would insert
                    shapes.setdefault((tuple(net.insert), tuple(net.set)), []).append(tuple(net.insert.values()))
                else:  # sets what it would not insert (an update came before the upsert): a statement of its own
                    odd.append((key, net))
            for (inserted, updated), rows in shapes.items():
                columns = KEYS[name] + updated if inserted is None else inserted
                self.out.append(_Sql(name, self._set_statement(name, inserted, updated),
                                     self._arrays(name, columns, rows)))
            for key, net in odd:
                inserted, updated = tuple(net.insert), tuple(net.set)  # type: ignore[arg-type]
                self.out.append(_Sql(name, self._statement(name, inserted, updated),
                                     [*self._params(name, inserted, net.insert), *self._params(name, updated, net.set)]))

    def finish(self) -> list[_Sql]:
        """Every statement: what is folded so far, then the sums."""
        self.flush()
        by_column: dict[tuple[str, str], list[tuple]] = {}
        for (table, key, column), amount in self.sums.items():
            by_column.setdefault((table, column), []).append((*key, amount))
        self.sums.clear()
        for (table, column), rows in by_column.items():
            keys = KEYS[table]
            names = (*keys, column)
            self.out.append(_Sql(table, f"UPDATE {self._table(table)} AS t SET {_q(column)} = t.{_q(column)} + "
                                 f"u.{_q(column)} FROM {self._unnest(table, names)} WHERE "
                                 + " AND ".join(f"t.{_q(k)} = u.{_q(k)}" for k in keys) + AND_GATE,
                                 self._arrays(table, names, rows)))
        return self.out

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
                    + " AND ".join(f"t.{_q(k)} = u.{_q(k)}" for k in keys) + AND_GATE)
        sql = (f"INSERT INTO {self._table(name)} ({', '.join(map(_q, inserted))}) SELECT "
               f"{', '.join(value(c) for c in inserted)} FROM {self._unnest(name, inserted)}{WHERE_GATE} "
               f"ON CONFLICT ({', '.join(map(_q, keys))}) ")
        if not updated:
            return sql + "DO NOTHING"
        return sql + "DO UPDATE SET " + ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in updated)

    def _statement(self, name: str, inserted: tuple[str, ...], updated: tuple[str, ...]) -> str:
        keys, types = KEYS[name], TYPES[name]
        sql = (f"INSERT INTO {self._table(name)} ({', '.join(map(_q, inserted))}) SELECT "
               + ", ".join(f"${i + 1}::{types[c]}" + ("::json" if c in JSON_COLUMNS[name] else "")
                           for i, c in enumerate(inserted))
               + f"{WHERE_GATE} ON CONFLICT ({', '.join(map(_q, keys))}) ")
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


def _key(table: str, row: dict[str, Any]) -> tuple:
    """The primary key's values of a row (or of a key) of `table`, in the key's order."""
    return _KEY_OF[table](row)


_KEY_OF: dict[str, Callable[[dict[str, Any]], tuple]] = {
    name: (operator.itemgetter(*keys) if len(keys) > 1 else (lambda row, k=keys[0]: (row[k],)))
    for name, keys in KEYS.items()}


def log_row(seq: int, e: ev.Event) -> tuple:
    """The event's row in `event_log` (its data as the JSON the log holds). An expertise version's
    row names it without its document: the document is in `expertise_files` and in the log, and it
    was most of the bytes the ledger wrote (tens of kB a task, a millisecond of the ledger's and
    PostgreSQL's time each) for an index nothing reads documents from."""
    if isinstance(e, ev.ExpertiseUpdated) and (e.document is not None or e.content):
        e = msgspec.structs.replace(e, document=None, content="")
    return (seq, e.event_id, e.project_id, getattr(e, "run_id", "") or "", e.type, e.aggregate, e.aggregate_id,
            e.occurred_at, _encode(e).decode())


class PositionMoved(Exception):
    """The tracking position is not the one the batch was folded against (another writer moved it)."""


async def read_tracked(pg: Any, schema: str, *, lock: bool = False) -> Tracked:
    row = await pg.fetchrow(f"SELECT last_stream_seq, stream FROM {_q(schema)}.projection_tracking WHERE "
                            f"projection = $1{' FOR UPDATE' if lock else ''}", PROJECTION)
    return Tracked(int(row[0]), row[1] or "", True) if row else Tracked(0, "", False)


async def write_batch(pg: Any, schema: str, batch: list[tuple[int, ev.Event]], read_gap: Reader, stream: str = "",
                      tracked: Tracked | None = None) -> tuple[list[ev.Event], Tracked]:
    """Apply events (in log order) exactly once, filling any gap, with the tracking position moved
    to the last of them atomically. `tracked`: the tracking row as this writer last wrote it (None:
    read it); if another writer moved it meanwhile nothing is written and the batch is folded again
    from the position as it is. `stream` names the log (see Bus.stream_identity): a position taken
    from another log (a stream deleted and made again) is not trusted, the new log is applied from
    its start. Returns the events of `batch` that were new, and the tracking row as written."""
    for _ in range(5):
        if tracked is None:
            tracked = await read_tracked(pg, schema)
        position = tracked.seq if not (stream and tracked.stream and tracked.stream != stream) else 0
        writer = RowWriter(schema)
        applied: list[ev.Event] = []
        log_rows: list[tuple] = []
        for seq, event in batch:
            if seq <= position:
                continue
            for gap_seq, gap_event in (await read_gap(position + 1, seq - 1) if seq > position + 1 else []):
                for change in changes(gap_event):
                    writer.add(change)
                log_rows.append(log_row(gap_seq, gap_event))
            for change in changes(event):
                writer.add(change)
            log_rows.append(log_row(seq, event))
            applied.append(event)
            position = seq
        if not applied:
            return [], tracked
        statements = writer.finish()
        # the log last: each row's projected_at (projection lag) is taken as close to the commit as can be
        statements.append(_Sql("event_log", f"INSERT INTO {_q(schema)}.event_log ({', '.join(LOG_COLUMNS)}) SELECT "
                               f"{', '.join(c if c != 'data' else 'data::json' for c in LOG_COLUMNS)} FROM "
                               f"{RowWriter._unnest('event_log', LOG_COLUMNS)}{WHERE_GATE} ON CONFLICT (seq) "
                               f"DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in LOG_COLUMNS[1:]),
                               [list(c) for c in zip(*log_rows)]))
        written = Tracked(position, stream or tracked.stream, True)
        try:
            await _write(pg, schema, statements, tracked, written)
        except PositionMoved:
            tracked = None
            continue
        return applied, written
    raise PositionMoved(f"the {PROJECTION} projection's position kept moving while a batch waited to be written")


async def _write(pg: Any, schema: str, statements: list[_Sql], tracked: Tracked, written: Tracked) -> None:
    """The statements, packed into as few as can go together (no table twice in one: WITH clauses see
    one snapshot), the first gated by the compare-and-set of the position; several in a transaction."""
    packs: list[list[_Sql]] = [[]]
    for sql in statements:
        if any(other.table == sql.table for other in packs[-1]):
            packs.append([])
        packs[-1].append(sql)
    if len(packs) == 1:
        if not await pg.fetchval(*_packed(schema, packs[0], tracked, written)):
            raise PositionMoved
        return
    async with pg.transaction():
        if await read_tracked(pg, schema, lock=True) != tracked:
            raise PositionMoved
        for i, pack in enumerate(packs):
            if not await pg.fetchval(*_packed(schema, pack, tracked if i == 0 else None, written)):
                raise PositionMoved


def _packed(schema: str, pack: list[_Sql], tracked: Tracked | None, written: Tracked) -> tuple:
    """One statement of several (renumbered parameters); with `tracked`, the position moves from it
    to `written` first and every row waits for that (none is written when it had moved)."""
    args: list[Any] = []
    clauses: list[str] = []
    if tracked is not None:
        table = f"{_q(schema)}.projection_tracking"
        if tracked.exists:
            gate = (f"UPDATE {table} SET last_stream_seq = $1, stream = $2 WHERE projection = $3 "
                    f"AND last_stream_seq = $4 AND stream = $5 RETURNING 1")
            args += [written.seq, written.stream, PROJECTION, tracked.seq, tracked.stream]
        else:
            gate = (f"INSERT INTO {table} (projection, last_stream_seq, stream) VALUES ($3, $1, $2) "
                    f"ON CONFLICT (projection) DO NOTHING RETURNING 1")
            args += [written.seq, written.stream, PROJECTION]
        clauses.append(f"gate AS ({gate})")
    for i, sql in enumerate(pack):
        offset = len(args)
        text = _PARAM.sub(lambda m: f"${int(m.group(1)) + offset}", sql.text)
        if tracked is not None:
            text = text.replace(WHERE_GATE, " WHERE EXISTS (SELECT 1 FROM gate)").replace(
                AND_GATE, " AND EXISTS (SELECT 1 FROM gate)")
        clauses.append(f"w{i} AS ({text.replace(WHERE_GATE, '').replace(AND_GATE, '')})")
        args += sql.args
    final = "SELECT count(*) FROM gate" if tracked is not None else "SELECT 1"
    return "WITH " + ", ".join(clauses) + " " + final, *args


async def apply_batch(pg: Any, schema: str, batch: list[tuple[int, ev.Event]], read_gap: Reader,
                      stream: str = "") -> list[ev.Event]:
    """`write_batch` from the position as stored; returns the events of `batch` that were new."""
    return (await write_batch(pg, schema, batch, read_gap, stream))[0]
