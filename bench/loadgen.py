"""A WebSocket load generator: N clients, each in a closed loop.

Every client holds one socket and sends its next message as soon as the
previous one is answered, for a fixed time and at most a fixed count, so
a run always ends. Three kinds of message:

- `echo`: a small JSON frame to the bare echo consumer (bench/echo.py);
- `recommend`: `{"type": "recommend", "n": 10}`, done on `recommendations`;
- `event`: a `click` with a fresh event_id, done once both the `ack` and
  the pushed `recommendations` have arrived (stored, folded in, pushed).

Used by bench/run.py; on its own, against servers already running on
127.0.0.1 (bench/scale_out.sh does this with two processes):

    DATABASE_URL=... python bench/loadgen.py --ports 8101 8102 \\
        --kind recommend --clients 20 --seconds 5
"""

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

KINDS = ("echo", "recommend", "event")
ECHO_FRAME = json.dumps({"type": "echo", "payload": "x" * 32})
CONNECT_TIMEOUT = 30
REPLY_TIMEOUT = 30


class ServerRefused(Exception):
    """The server answered a load message with an error."""


@dataclass
class LoadResult:
    kind: str
    clients: int
    seconds: float
    latencies_ms: list = field(repr=False)
    errors: list = field(default_factory=list)
    # Filled in by whoever watched the server during the run.
    server_cpu_seconds: float | None = None

    @property
    def completed(self):
        return len(self.latencies_ms)

    @property
    def throughput(self):
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, q):
        return float(np.percentile(self.latencies_ms, q)) if self.completed else 0.0

    def summary(self):
        cpu_ms = None
        if self.server_cpu_seconds is not None and self.completed:
            cpu_ms = self.server_cpu_seconds * 1e3 / self.completed
        return {
            "kind": self.kind,
            "clients": self.clients,
            "messages": self.completed,
            "errors": len(self.errors),
            "seconds": self.seconds,
            "per_second": self.throughput,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "server_cpu_ms_per_message": cpu_ms,
        }


def socket_url(base_url, kind, token=None):
    if kind == "echo":
        return f"{base_url}/ws/echo/"
    return f"{base_url}/ws/recommendations/?token={token}"


async def open_socket(url):
    # No compression: the run measures the servers, not zlib.
    return await connect(
        url,
        compression=None,
        ping_interval=None,
        open_timeout=CONNECT_TIMEOUT,
        max_size=2**22,
    )


class Client:
    """One socket and the messages it sends, numbered by request_id."""

    def __init__(self, connection, kind, items, tag, seed):
        self.connection, self.kind, self.items = connection, kind, items
        self.tag = tag
        self.random = random.Random(seed)
        self.sent = 0

    async def exchange(self):
        self.sent += 1
        if self.kind == "echo":
            await self.connection.send(ECHO_FRAME)
            await self._reply()
            return
        if self.kind == "recommend":
            message = {"type": "recommend", "n": 10, "request_id": self.sent}
            await self.connection.send(json.dumps(message))
            await self._until({"recommendations"})
            return
        message = {
            "type": "event",
            "event": "click",
            "item": self.random.choice(self.items),
            "event_id": f"{self.tag}-{self.sent}",
            "request_id": self.sent,
        }
        await self.connection.send(json.dumps(message))
        await self._until({"ack", "recommendations"})

    async def _reply(self):
        return await asyncio.wait_for(self.connection.recv(), REPLY_TIMEOUT)

    async def _until(self, wanted):
        """Read replies until one of each wanted type for this request."""
        missing = set(wanted)
        while missing:
            reply = json.loads(await self._reply())
            if reply.get("type") == "error":
                raise ServerRefused(f"{reply.get('code')}: {reply.get('message')}")
            if reply.get("request_id") == self.sent:
                missing.discard(reply.get("type"))


async def run_load(
    base_urls, kind, tokens, seconds, items=(), max_per_client=100_000, seed=0
):
    """Closed-loop load from one client per token, spread over the servers.

    The clock starts once every client is connected and stops when the
    last client has finished its last round trip.
    """
    run_tag = uuid.uuid4().hex[:10]
    urls = [
        socket_url(base, kind, token)
        for base, token in zip(itertools.cycle(base_urls), tokens)
    ]
    try:
        connections = await asyncio.gather(*(open_socket(url) for url in urls))
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        # A server that is gone measures nothing; say so in the result.
        return LoadResult(kind, len(urls), 0.0, [], [f"connect: {exc!r}"])
    clients = [
        Client(c, kind, list(items), f"{run_tag}-{n}", seed + n)
        for n, c in enumerate(connections)
    ]
    latencies, errors = [], []

    async def drive(client, deadline):
        for _ in range(max_per_client):
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                await client.exchange()
            except (ServerRefused, TimeoutError, ConnectionClosed) as exc:
                errors.append(str(exc) or type(exc).__name__)
                return
            latencies.append((time.perf_counter() - started) * 1e3)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(drive(c, started + seconds) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    return LoadResult(kind, len(clients), elapsed, latencies, errors)


async def hold_idle_sockets(base_url, tokens, count, measure, concurrency=50):
    """Open `count` sockets in two halves (tokens reused in turn), calling
    `measure()` before the first and after each half while all are open.

    Returns the measures, the sockets open after each half, the first few
    failures and the seconds it took. A socket refused once is tried once
    more: the run asks how many a process holds, not how fast it accepts.
    """
    gate = asyncio.Semaphore(concurrency)
    token_cycle = itertools.cycle(tokens)

    async def open_one():
        url = socket_url(base_url, "recommend", next(token_cycle))
        async with gate:
            for attempt in range(2):
                try:
                    return await open_socket(url)
                except Exception as exc:  # a refusal is counted, not raised
                    if attempt:
                        return exc
                    await asyncio.sleep(0.5)

    measures, opened, failures, connections = [measure()], [], [], []
    started = time.perf_counter()
    try:
        for half in (count // 2, count - count // 2):
            outcomes = await asyncio.gather(*(open_one() for _ in range(half)))
            connections += [c for c in outcomes if not isinstance(c, BaseException)]
            failures += [repr(c) for c in outcomes if isinstance(c, BaseException)]
            # Let the server finish accepting and joining groups.
            await asyncio.sleep(1.0)
            measures.append(measure())
            # Only those the server has not closed since (a cap, say).
            opened.append(sum(c.state is State.OPEN for c in connections))
        seconds = time.perf_counter() - started
    finally:
        for connection in connections:
            connection.transport.abort()
    return measures, opened, failures[:3], seconds


async def cross_process_pushes(base_urls, token, items, seconds, limit=1000):
    """One user with a socket on each of two servers: events sent to the
    first must be pushed to the second (through the shared channel layer).
    Returns the latencies, in ms, from sending to the other socket's push."""
    first_url, second_url = (socket_url(b, "event", token) for b in base_urls[:2])
    sender, watcher = await asyncio.gather(
        open_socket(first_url), open_socket(second_url)
    )
    client = Client(sender, "event", list(items), uuid.uuid4().hex[:10], 0)
    latencies, deadline = [], time.perf_counter() + seconds
    try:
        for _ in range(limit):
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            await client.exchange()
            while True:
                reply = json.loads(
                    await asyncio.wait_for(watcher.recv(), REPLY_TIMEOUT)
                )
                if reply.get("type") == "recommendations":
                    break
            latencies.append((time.perf_counter() - started) * 1e3)
    finally:
        await asyncio.gather(sender.close(), watcher.close())
    return latencies


def run(coroutine):
    """Run a coroutine on uvloop when it is installed: a cheaper client
    leaves more of a shared machine to the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, nargs="+", required=True)
    parser.add_argument(
        "--kind",
        choices=[*KINDS, "push"],
        default="recommend",
        help="push: events on the first server, pushes read on the second",
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 2000 or not 0 < args.seconds <= 600:
        raise SystemExit("--clients must be 1 to 2000 and --seconds at most 600")

    from harness import setup_django_here

    setup_django_here()
    from events.models import EndUser, Item
    from events.tokens import make_ws_token

    users = list(EndUser.objects.order_by("pk").values_list("external_id", flat=True))
    items = list(Item.objects.values_list("external_id", flat=True)[:5000])
    if not users or not items:
        raise SystemExit("the database holds no users or items: import some first")
    tokens = [make_ws_token(users[n % len(users)], 3600) for n in range(args.clients)]
    base_urls = [f"ws://127.0.0.1:{port}" for port in args.ports]

    if args.kind == "push":
        if len(base_urls) < 2:
            raise SystemExit("--kind push needs two --ports")
        pushed = run(cross_process_pushes(base_urls, tokens[0], items, args.seconds))
        print(
            f"{len(pushed)} events sent to port {args.ports[0]} were pushed to "
            f"the same user's socket on port {args.ports[1]}, p50 "
            f"{statistics.median(pushed):.2f} ms"
        )
        return

    result = run(run_load(base_urls, args.kind, tokens, args.seconds, items))
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{args.kind} over {len(base_urls)} server(s), {args.clients} clients: "
        f"{summary['per_second']:.0f}/s, p50 {summary['p50_ms']:.2f} ms, "
        f"p99 {summary['p99_ms']:.2f} ms, {summary['errors']} errors"
    )
    if result.errors:
        print("first error:", result.errors[0])


if __name__ == "__main__":
    main()
