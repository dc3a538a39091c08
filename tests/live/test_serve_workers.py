"""``capshare serve --workers 2``: both worker processes answer on the one port, every
accepted connection has TCP_NODELAY (no Nagle's-algorithm wait on keep-alive requests),
and SIGTERM stops the parent and its workers.

Which process holds a connection is read from /proc (Linux): the server side of the
client's connection in /proc/net/tcp gives the socket's inode, and the worker whose file
descriptors include that socket answered it; no header is added to the product for this."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from app.bench.load import CAPSHARE, server_process
from app.cli.serve import _listening_socket
from tests.conftest import TEST_SECRET
from tests.live.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _server_socket_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return int(fields[9])
    return None


def _holder(pids: set[int], inode: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _ask_on_new_connection(port: int) -> tuple[socket.socket, bytes]:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return conn, data


def test_two_workers_answer_on_one_port_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "CAPSHARE_SECRET_KEY": TEST_SECRET,
           "CAPSHARE_JOBS_IN_PROCESS": "false", "CAPSHARE_PAYMENTS_INLINE": "false"}  # fmt: skip
    args = [*CAPSHARE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    with server_process(args, port=port, env=env, log=log, ready_timeout_s=90) as proc:
        workers = _children(proc.pid)
        answered: set[int] = set()
        for _ in range(200):  # new connections until both workers have answered one
            conn, reply = _ask_on_new_connection(port)
            with conn:
                assert reply.startswith(b"HTTP/1.1 200"), reply
                inode = _server_socket_inode(port, conn.getsockname()[1])
                assert inode is not None
                holder = _holder(workers, inode)
                assert holder is not None, "a worker process of the server holds the connection"
                answered.add(holder)
            if len(answered) == 2:
                break
        assert len(answered) == 2, f"only {answered} of {workers} answered"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in answered), "workers stopped"
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


def _nodelay_of_accepted(sock: socket.socket) -> int:
    async def main() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted = w.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            w.close()

        server = await asyncio.start_server(on, sock=sock)
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(main())


def test_accepted_connections_have_tcp_nodelay() -> None:
    """The cause of the keep-alive tax, checked where it lives: the socket uvicorn's own
    multi-process mode binds (``socket.socket(family)``) gives accepted connections no
    TCP_NODELAY; the one ``capshare serve --workers N`` binds does (asyncio sets it)."""
    like_uvicorn = socket.socket(socket.AF_INET)
    like_uvicorn.bind(("127.0.0.1", 0))
    assert _nodelay_of_accepted(like_uvicorn) == 0
    assert _nodelay_of_accepted(_listening_socket("127.0.0.1", 0)) != 0


def test_the_keepalive_benchmark_prints_each_process_model(tmp_path: Path) -> None:
    from app.bench.load import KEEPALIVE_SERVERS, keepalive_table

    printed = keepalive_table(f"sqlite:///{tmp_path / 'k.db'}", n=200, workers=[1], tmp=tmp_path)
    lines = printed.splitlines()
    assert "--workers 1" in lines[1]
    for name, line in zip(KEEPALIVE_SERVERS, lines[2:], strict=True):
        assert line.startswith(name)
        p50, p95 = line[len(name) :].replace("(", " ").replace(")", " ").split()
        assert 0 < float(p50) <= float(p95)
