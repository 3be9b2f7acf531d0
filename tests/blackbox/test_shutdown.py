"""SIGTERM: stop accepting, finish what is in flight, checkpoint, exit 0 (SPEC §5)."""
import signal
import socket
import time

import pytest


def _read_response(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_sigterm_during_a_request_lets_it_finish_and_exits_0(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body = b'{"half": "of the body arrives before SIGTERM, the rest after"}'
    sock.sendall(b"POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body[:20])
    time.sleep(0.3)  # the server has the headers: the request is in flight
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.proc.poll() is None, "the server quit with a request in flight"
    with pytest.raises(OSError):  # no longer accepting new connections
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    sock.sendall(body[20:])
    response = _read_response(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 405")
    assert b'"detail"' in response
    assert server.proc.wait(timeout=10) == 0
    log = server.output()
    assert "shutting down" in log and "stopped cleanly" in log


def test_sigterm_when_idle_checkpoints_and_exits_quickly(server, workdir):
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 5
    wal = workdir / "state" / "system.duckdb.wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_grace_period_bounds_a_stuck_request(server_factory, env):
    env["AGNES_SHUTDOWN_GRACE"] = "1"
    server = server_factory(env)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
    time.sleep(0.3)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "grace period ended" in server.output()
    sock.close()
