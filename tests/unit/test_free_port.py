"""Ports picked for a server a child process binds later: never one an outgoing connection can hold."""

from __future__ import annotations

import socket

import pytest

from shared import infra


def test_a_port_from_bind_zero_can_be_held_by_an_outgoing_connection_so_the_child_cannot_bind_it():
    # the failure the picker avoids, reproduced: the kernel's ephemeral pick goes to a client socket
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        taken = client.getsockname()[1]
        assert taken >= infra._ephemeral_low()
        with socket.socket() as child, pytest.raises(OSError, match="in use"):
            child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server does
            child.bind(("0.0.0.0", taken))


def test_free_ports_lie_below_the_ephemeral_range_are_bindable_and_never_repeat():
    low = infra._ephemeral_low()
    ports = [infra.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= p < low for p in ports)
    for p in ports[:5]:
        with socket.create_server(("0.0.0.0", p)):
            pass


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        picks = iter([port - 10_000, 5])  # the listener's port first, then another
        monkeypatch.setattr(infra, "_handed_out", set())
        monkeypatch.setattr(infra, "_ephemeral_low", lambda: 65_000)
        monkeypatch.setattr(infra.secrets, "randbelow", lambda n: next(picks))
        assert infra.free_port() == 10_005


def test_the_range_setting_unreadable_or_leaving_no_room(tmp_path, monkeypatch):
    assert infra._ephemeral_low(str(tmp_path / "missing")) == 32768
    (tmp_path / "range").write_text("1024\t65535\n")
    assert infra._ephemeral_low(str(tmp_path / "range")) == 1024
    monkeypatch.setattr(infra, "_ephemeral_low", lambda: 1024)  # no room below: the kernel's own pick
    port = infra.free_port()
    with socket.create_server(("127.0.0.1", port)):
        pass
