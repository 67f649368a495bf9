"""Real server processes for tests: free ports, manage.py, Daphne, uvicorn,
a private redis-server, and WebSocket clients of them."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import websockets

from events.tokens import make_ws_token

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/movielens/recbole"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


class OwnRedis:
    """A redis-server of this module's own, which it may stop at will."""

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def manage(env, *args, timeout=120):
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def start_daphne(env, port):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            # Pings every second, and a peer that misses one for two
            # seconds is dropped: the defaults are 20 and 30.
            "--ping-interval",
            "1",
            "--ping-timeout",
            "2",
            "rtrec_site.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


def start_uvicorn(env, port):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws-ping-interval",
            "1",
            "--ws-ping-timeout",
            "1",
            "--log-level",
            "warning",
            "rtrec_site.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


def stop(processes):
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def connect(port, user):
    token = make_ws_token(user, 600)
    return websockets.connect(
        f"ws://127.0.0.1:{port}/ws/recommendations/?token={token}"
    )


async def next_of_type(connection, kind, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        message = json.loads(await asyncio.wait_for(connection.recv(), left))
        if message["type"] == kind:
            return message
