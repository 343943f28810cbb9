"""The gateway's doors over real HTTP and a real WebSocket: without the token every route and
the WebSocket answer 401 (only the bare liveness probe answers, and says nothing else); a
foreign Origin or Host changes nothing, token or not; the printed URL's token becomes an
HttpOnly SameSite=Strict cookie; CORS stays closed; --no-auth is for loopback only."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from shared import events as ev
from services.gateway.auth import load_or_create_token, make_doors
from services.gateway.deps import GatewayConfigError
from tests.integration.test_gateway import AUTH, TOKEN, publish_and_project, run_events, running_gateway

pytestmark = pytest.mark.integration

EVIL = "http://attacker.example"


async def handshake_status(url: str, path: str, headers: dict[str, str]) -> int:
    """The status a real WebSocket upgrade request gets (101 = accepted), with any Host or Origin."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = {"Host": parts.netloc, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
             "Sec-WebSocket-Version": "13", **headers}
    writer.write((f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n").encode())
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status.split()[1])


async def routes_of(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every (method, path) of the served OpenAPI document, path parameters filled in, plus the
    routes outside it (page, static files, the document itself, its viewer)."""
    spec = (await client.get("/api/openapi.json", headers=AUTH)).json()
    out = [(method.upper(), path.replace("{", "").replace("}", ""))
           for path, item in spec["paths"].items() for method in item if method in ("get", "post", "put", "delete", "patch")]
    return out + [("GET", "/"), ("GET", "/static/js/app.js"), ("GET", "/api/openapi.json"), ("GET", "/api/docs")]


async def logged(bus) -> list[ev.Event]:
    return [d.event async for d in bus.read()]


async def test_without_the_token_every_route_and_the_websocket_answer_401(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as anonymous:
            routes = await routes_of(anonymous)
            assert len(routes) > 10 and ("POST", "/api/runs") in routes
            for method, path in routes:
                if path == "/api/health":
                    continue
                for headers in ({}, {"Authorization": "Bearer not-the-token-at-all-0000"},
                                {"Cookie": "yokeflow_token=not-the-token-at-all-0000"}):
                    denied = await anonymous.request(method, path, headers=headers, json={} if method == "POST" else None)
                    assert denied.status_code == 401, (method, path, headers, denied.text)
            denied = await anonymous.get("/api/runs")
            assert denied.json()["field"] == "authorization" and denied.headers["www-authenticate"] == "Bearer"
            assert "yokeflow up" in (await anonymous.get("/")).text  # the page tells a person what to open
            # the liveness probe answers, but tells nothing beyond ok
            assert (await anonymous.get("/api/health")).json() == {"status": "ok"}
            detailed = (await anonymous.get("/api/health", headers=AUTH)).json()
            assert detailed["database"] is True and "stream_last_seq" in detailed
        assert await handshake_status(url, "/api/events/ws", {}) == 401
        assert await handshake_status(url, "/api/events/ws?token=" + TOKEN, {}) == 401  # no token in URLs
        assert await handshake_status(url, "/api/events/ws", {"Authorization": "Bearer wrong-token-000000000"}) == 401
        assert await handshake_status(url, "/api/events/ws", AUTH) == 101
    assert await logged(bus) == []


async def test_a_foreign_origin_or_host_changes_nothing_token_or_not(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        await publish_and_project(bus, database_url, run_events())
        port = urlsplit(url).port
        async with httpx.AsyncClient(base_url=url, timeout=20) as c:
            cookie = {"Cookie": f"yokeflow_token={TOKEN}"}
            for creds in ({}, AUTH, cookie):
                # a cross-site form POST or fetch from another page: refused before anything happens
                for origin in (EVIL, "null", f"http://127.0.0.1.attacker.example:{port}"):
                    res = await c.post("/api/runs/r1/cancel", headers={**creds, "Origin": origin},
                                       content=b"reason=x", )
                    assert res.status_code == 403 and res.json()["field"] == "origin", res.text
                # DNS rebinding: the page's own name resolves to 127.0.0.1, so its requests carry its Host
                for method, path in (("POST", "/api/runs/r1/cancel"), ("GET", "/api/runs"), ("GET", "/")):
                    res = await c.request(method, path, headers={**creds, "Host": f"rebind.attacker.example:{port}"})
                    assert res.status_code == 403 and res.json()["field"] == "host", (method, path, res.text)
            assert (await c.get("/api/runs/r1", headers=AUTH)).json()["run"]["status"] == "running"
            assert not [e for e in await logged(bus) if isinstance(e, ev.RunCancelled)]
            # the same request from the gateway's own page goes through
            ok = await c.post("/api/runs/r1/cancel", headers={**AUTH, "Origin": url})
            assert ok.status_code == 202, ok.text
            # CORS is closed: a preflight from another origin gets no permission
            pre = await c.options("/api/runs", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
            assert "access-control-allow-origin" not in pre.headers
        for headers in ({**AUTH, "Origin": EVIL}, {**AUTH, "Host": f"rebind.attacker.example:{port}"},
                        {"Origin": EVIL, "Cookie": f"yokeflow_token={TOKEN}"}):
            assert await handshake_status(url, "/api/events/ws", headers) == 403, headers
        async with connect(url.replace("http", "ws") + "/api/events/ws", origin=url,
                           additional_headers={"Cookie": f"yokeflow_token={TOKEN}"}) as ws:
            assert json.loads(await ws.recv())["kind"] == "hello"


async def test_the_printed_url_swaps_its_token_for_a_strict_httponly_cookie(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as browser:
            wrong = await browser.get("/", params={"token": "wrong-token-0000000000"})
            assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
            res = await browser.get("/", params={"token": TOKEN})
            assert res.status_code == 303 and res.headers["location"] == "/"  # the token leaves the address bar
            cookie = res.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
            assert (await browser.get("/api/runs")).status_code == 200  # the cookie jar carries it now
            assert (await browser.get("/")).status_code == 200
        async with httpx.AsyncClient(base_url=url, timeout=20) as other:
            assert (await other.get("/api/runs", params={"token": TOKEN})).status_code == 401  # only / takes ?token


async def test_no_auth_is_for_loopback_only_and_still_checks_host_and_origin(bus, database_url):
    with pytest.raises(GatewayConfigError, match="loopback"):
        make_doors(None, no_auth=True, listen_host="0.0.0.0")
    with pytest.raises(GatewayConfigError, match="needs an API token"):
        make_doors(None, listen_host="127.0.0.1")
    async with running_gateway(bus, database_url, api_token=None, no_auth=True) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as c:
            assert (await c.get("/api/runs")).status_code == 200
            assert (await c.post("/api/runs", json={}, headers={"Origin": EVIL})).status_code == 403
            assert (await c.get("/api/runs", headers={"Host": "rebind.attacker.example"})).status_code == 403


def test_the_token_file_is_made_once_private_and_reused(tmp_path):
    token, made = load_or_create_token(tmp_path / "state")
    path = tmp_path / "state" / "api-token"
    assert made and len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, made_again = load_or_create_token(tmp_path / "state")
    assert (again, made_again) == (token, False)
    path.chmod(0o644)
    load_or_create_token(tmp_path / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("changeme\n")
    with pytest.raises(GatewayConfigError, match="delete the file"):
        load_or_create_token(tmp_path / "state")


def test_up_takes_the_environment_token_over_the_file(tmp_path, monkeypatch):
    from yokeflow.commands.runtime import gateway_token

    monkeypatch.setenv("YOKEFLOW_API_TOKEN", "an-operator-chosen-token-123")
    assert gateway_token(tmp_path) == "an-operator-chosen-token-123"
    assert not (tmp_path / "api-token").exists()
    monkeypatch.delenv("YOKEFLOW_API_TOKEN")
    assert gateway_token(tmp_path) == (tmp_path / "api-token").read_text().strip()
