"""The embedded PostgreSQL: a password for every connection, a powerless role per service."""

from __future__ import annotations

import os
import stat
import subprocess

import asyncpg
import pytest

from shared import db
from shared.infra import EmbeddedPostgres, _open_path_for, _pg_bin

pytestmark = pytest.mark.integration


async def _refused(url: str) -> str:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as info:
        conn = await asyncpg.connect(url)
        await conn.close()
    return str(info.value)


async def test_a_local_connection_without_the_password_is_refused(pg_server, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/pgpass")
    assert "password" in await _refused(f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres")
    assert "password" in await _refused(f"postgresql://postgres:wrong@127.0.0.1:{pg_server.port}/postgres")
    assert "password" in await _refused(f"postgresql://yf_ledger@127.0.0.1:{pg_server.port}/postgres")
    hba = (pg_server.data_dir / "pg_hba.conf").read_text()
    assert "trust" not in hba and "scram-sha-256" in hba
    mode = stat.S_IMODE(pg_server.secrets_path.stat().st_mode)
    assert mode == 0o600, oct(mode)


async def test_service_roles_have_only_the_rights_they_need(pg_server, database_url):
    database = db.Database(database_url)
    await database.migrate()
    await database.dispose()
    name = database_url.rsplit("/", 1)[1]

    ledger = await asyncpg.connect(pg_server.role_url("ledger", name))
    try:
        await ledger.execute("INSERT INTO yf.projection_tracking VALUES ('t', 1)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ledger.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ledger.execute("CREATE SCHEMA mine")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ledger.execute("DROP TABLE yf.projects")
    finally:
        await ledger.close()

    for reader in ("gateway", "cli"):
        conn = await asyncpg.connect(pg_server.role_url(reader, name))
        try:
            assert await conn.fetchval("SELECT last_stream_seq FROM yf.projection_tracking WHERE projection = 't'") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE yf.projection_tracking SET last_stream_seq = 2")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        finally:
            await conn.close()

    # A service role passes migrate() on a current schema and cannot be the one to create it.
    assert await db.Database(pg_server.role_url("gateway", name)).migrate() == db.MIGRATIONS[-1][0]
    with pytest.raises(db.DatabaseUnavailable, match="database owner"):
        await db.Database(pg_server.role_url("ledger", name), schema="other").migrate()


async def test_a_data_folder_made_with_trust_is_locked_on_start(tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/pgpass")
    data = tmp_path / "pgdata"
    old = EmbeddedPostgres(data)
    run_as = old._run_as()
    data.mkdir()
    if run_as:
        os.chown(data, run_as["user"], run_as["group"])
        _open_path_for(tmp_path)
    subprocess.run([str(_pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True, **run_as)
    assert "trust" in (data / "pg_hba.conf").read_text()

    server = EmbeddedPostgres(data).start()
    try:
        assert "trust" not in (data / "pg_hba.conf").read_text()
        await _refused(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
        conn = await asyncpg.connect(server.url)
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = 'yf_ledger'") is False
        await conn.close()
    finally:
        server.stop()
