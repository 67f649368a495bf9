"""A bounded soak: many sockets sending events and recommend requests.

Starts a real server (uvicorn or Daphne) on a throwaway SQLite database, opens N
sockets (one end user each) for M minutes, each sending an event or a
recommend request every `--interval` seconds, and samples the server's
resident memory. At the end it checks every acknowledged event in the
database: none may be missing and none stored twice. It prints a table
and writes it into bench/RESULTS.md.

    python bench/soak.py [--sockets 200] [--minutes 10] [--interval 1.0]
                         [--server uvicorn|daphne] [--data PATH] [--items N]
                         [--no-results]

The results file keeps one section per server, socket count and
interval; a run replaces only its own.

Everything runs on 127.0.0.1 and stops by itself after `--minutes`.
"""

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from harness import free_port, start_server

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
FIXTURE = ROOT / "tests/fixtures/movielens/recbole"
# Seconds a client waits for the acks still due when the run ends.
DRAIN_SECONDS = 120


@dataclass
class Window:
    """What the clients saw since the last sample."""

    ack_ms: list = field(default_factory=list)
    recommend_ms: list = field(default_factory=list)


@dataclass
class Stats:
    open_sockets: int = 0
    sent_events: int = 0
    acked: set = field(default_factory=set)
    duplicate_acks: int = 0
    recommends: int = 0
    pushes: int = 0
    errors: dict = field(default_factory=dict)
    # How sockets ended early: "server 1011", "no close frame"...
    closes: dict = field(default_factory=dict)
    window: Window = field(default_factory=Window)

    def error(self, code):
        self.errors[code] = self.errors.get(code, 0) + 1

    def closed(self, exc):
        if exc.rcvd is not None:
            how = f"closed by the server with {exc.rcvd.code}"
        elif exc.sent is not None:
            how = f"closed by the client with {exc.sent.code}"
        else:
            how = "dropped without a close frame"
        self.closes[how] = self.closes.get(how, 0) + 1


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between a socket's sends"
    )
    parser.add_argument("--samples", type=int, default=20, help="memory samples")
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--data", type=Path, default=None, help="a MovieLens folder")
    parser.add_argument(
        "--items",
        type=int,
        default=None,
        help="act on the first N items only, so each user's state stops growing",
    )
    parser.add_argument("--no-results", action="store_true", help="print only")
    return parser.parse_args()


def default_data():
    candidate = Path(os.environ.get("RTREC_DATA", ROOT.parent / "shared/data/ml-100k"))
    return candidate if candidate.is_dir() else FIXTURE


def server_env(var_dir, sockets):
    # DEBUG off, as in production: with DEBUG on, Django keeps the last
    # 9,000 queries of every connection, which reads as a slow leak here.
    # The clients' tokens are signed with the same key (tokens_for).
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    env = dict(
        os.environ, RTREC_VAR_DIR=str(var_dir), LOG_LEVEL="WARNING", DEBUG="false"
    )
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    # Every client is on 127.0.0.1: the per-address cap must let them all in.
    env["RTREC_WS_MAX_SOCKETS_PER_ADDRESS"] = str(sockets + 10)
    return env


def manage(env, *arguments):
    finished = subprocess.run(
        [sys.executable, "manage.py", *map(str, arguments)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr[-4000:])
        raise SystemExit(f"manage.py {arguments[0]} failed")


def prepare(var_dir, env, data):
    started = time.perf_counter()
    manage(env, "migrate", "--noinput")
    manage(env, "import_movielens", data)
    manage(env, "train", "--feedback", "implicit", "--factors", "32", "--epochs", "10")
    print(f"prepared {data.name} in {time.perf_counter() - started:.0f} s", flush=True)

    with sqlite3.connect(var_dir / "rtrec.sqlite3") as db:
        users = [r[0] for r in db.execute("SELECT external_id FROM events_enduser")]
        items = [r[0] for r in db.execute("SELECT external_id FROM events_item")]
    return users, items


def tokens_for(var_dir, users, count):
    # The server signs with the same key: the development one, or SECRET_KEY.
    os.environ["RTREC_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
    import warnings

    warnings.filterwarnings("ignore", message="SECRET_KEY is not set")
    import django

    django.setup()
    from events.tokens import make_ws_token

    return [make_ws_token(users[n % len(users)], 24 * 3600) for n in range(count)]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def client(number, url, items, stats, stop_at, interval):
    import websockets

    pending_events, pending_recommends = {}, {}
    # No client pings: browsers send none, and a load generator that
    # closed sockets on its own timeout would hide what the server does.
    async with websockets.connect(
        url, max_size=2**22, ping_interval=None
    ) as connection:
        stats.open_sockets += 1
        reader = asyncio.create_task(
            read_answers(connection, stats, pending_events, pending_recommends)
        )
        await asyncio.sleep(random.uniform(0, interval))
        sent = 0
        try:
            while time.monotonic() < stop_at:
                sent += 1
                if sent % 2:
                    event_id = f"soak-{number}-{sent}"
                    pending_events[event_id] = time.perf_counter()
                    stats.sent_events += 1
                    message = {
                        "type": "event",
                        "event": random.choice(["view", "click", "like"]),
                        "item": random.choice(items),
                        "event_id": event_id,
                        "request_id": event_id,
                    }
                else:
                    request_id = f"rec-{number}-{sent}"
                    pending_recommends[request_id] = time.perf_counter()
                    message = {"type": "recommend", "n": 10, "request_id": request_id}
                await connection.send(json.dumps(message))
                await asyncio.sleep(interval * random.uniform(0.8, 1.2))

            drain_until = time.monotonic() + DRAIN_SECONDS
            while pending_events and time.monotonic() < drain_until:
                await asyncio.sleep(0.1)
        except websockets.ConnectionClosed as exc:
            stats.closed(exc)
        finally:
            reader.cancel()
            stats.open_sockets -= 1


async def read_answers(connection, stats, pending_events, pending_recommends):
    async for text in connection:
        answer = json.loads(text)
        kind, request_id = answer["type"], answer.get("request_id")
        if kind == "ack":
            sent_at = pending_events.pop(answer["event_id"], None)
            if sent_at is not None:
                stats.window.ack_ms.append((time.perf_counter() - sent_at) * 1000)
            stats.acked.add(answer["event_id"])
            stats.duplicate_acks += answer["duplicate"]
        elif kind == "recommendations" and request_id in pending_recommends:
            sent_at = pending_recommends.pop(request_id)
            stats.window.recommend_ms.append((time.perf_counter() - sent_at) * 1000)
            stats.recommends += 1
        elif kind == "recommendations":
            stats.pushes += 1
        elif kind == "error":
            stats.error(answer["code"])
            pending_events.pop(request_id, None)


def percentile(values, share):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def sample(process, stats, started, every, rows, stop_at):
    while True:
        await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))
        window, stats.window = stats.window, Window()
        rows.append(
            {
                "elapsed_s": time.monotonic() - started,
                "rss_mib": rss_mib(process.pid),
                "load": os.getloadavg()[0],
                "sockets": stats.open_sockets,
                "acked": len(stats.acked),
                "recommends": stats.recommends,
                "pushes": stats.pushes,
                "errors": sum(stats.errors.values()),
                "ack_p50_ms": percentile(window.ack_ms, 0.5),
                "ack_p95_ms": percentile(window.ack_ms, 0.95),
                "recommend_p95_ms": percentile(window.recommend_ms, 0.95),
            }
        )
        if time.monotonic() >= stop_at:
            return


async def soak(process, url, tokens, items, args):
    stats, rows = Stats(), []
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    sampler = asyncio.create_task(
        sample(process, stats, started, args.minutes * 60 / args.samples, rows, stop_at)
    )
    clients = [
        client(n, f"{url}?token={token}", items, stats, stop_at, args.interval)
        for n, token in enumerate(tokens)
    ]
    outcomes = await asyncio.gather(*clients, return_exceptions=True)
    await sampler
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    return stats, rows, failures


def check_stored(var_dir, acked):
    with sqlite3.connect(var_dir / "rtrec.sqlite3", timeout=30) as db:
        rows = db.execute(
            "SELECT event_id, count(*) FROM events_interaction "
            "WHERE event_id LIKE 'soak-%' GROUP BY event_id"
        ).fetchall()
    stored = dict(rows)
    return {
        "acked": len(acked),
        "stored": len(stored),
        "lost": len(acked - stored.keys()),
        "stored_twice": sum(1 for count in stored.values() if count > 1),
    }


def table(rows):
    head = (
        "| elapsed | server RSS (MiB) | open sockets | events acked | "
        "recommends answered | pushes | errors | ack p50 (ms) | ack p95 (ms) | "
        "recommend p95 (ms) | machine load (1 min) |"
    )
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        lines.append(
            f"| {row['elapsed_s'] / 60:.1f} min | {row['rss_mib']:.1f} | "
            f"{row['sockets']} | {row['acked']} | {row['recommends']} | "
            f"{row['pushes']} | {row['errors']} | {_ms(row['ack_p50_ms'])} | "
            f"{_ms(row['ack_p95_ms'])} | {_ms(row['recommend_p95_ms'])} | "
            f"{row['load']:.1f} |"
        )
    return "\n".join(lines)


def _ms(value):
    return "-" if value is None else f"{value:.1f}"


def summary(rows, checked, stats, failures):
    warm = next(r for r in rows if r["elapsed_s"] >= rows[-1]["elapsed_s"] * 0.2)
    end = rows[-1]
    growth = end["rss_mib"] - warm["rss_mib"]
    lines = [
        f"Events sent: {stats.sent_events}; acknowledged: {checked['acked']}; "
        f"stored: {checked['stored']}; acknowledged but not stored: "
        f"{checked['lost']}; stored twice: {checked['stored_twice']}; acks "
        f"marked duplicate: {stats.duplicate_acks}; sent but no ack seen "
        f"within {DRAIN_SECONDS} s of the end: "
        f"{stats.sent_events - checked['acked']}.",
        f"Server RSS after warm-up ({warm['elapsed_s'] / 60:.1f} min): "
        f"{warm['rss_mib']:.1f} MiB; at the end: {end['rss_mib']:.1f} MiB "
        f"({growth:+.1f} MiB, {100 * growth / warm['rss_mib']:+.1f}%).",
        f"Errors by code: {json.dumps(stats.errors, sort_keys=True)}; sockets "
        f"that ended early: {json.dumps(stats.closes, sort_keys=True)}; "
        f"clients that failed: {len(failures)}.",
    ]
    return "\n\n".join(lines)


def write_results(text, label):
    start, end = f"<!-- soak {label} -->", f"<!-- /soak {label} -->"
    section = f"{start}\n{text}\n{end}"
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: section, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(updated)


def main():
    args = parse_args()
    data = args.data or default_data()
    with tempfile.TemporaryDirectory(prefix="rtrec-soak-") as folder:
        var_dir = Path(folder)
        env = server_env(var_dir, args.sockets)
        users, items = prepare(var_dir, env, data)
        items = items[: args.items] if args.items else items
        tokens = tokens_for(var_dir, users, args.sockets)
        port = free_port()
        process = start_server(port, env, server=args.server)
        try:
            url = f"ws://127.0.0.1:{port}/ws/recommendations/"
            stats, rows, failures = asyncio.run(soak(process, url, tokens, items, args))
        finally:
            process.terminate()
            process.wait(30)
        checked = check_stored(var_dir, stats.acked)

    command = (
        f"python bench/soak.py --sockets {args.sockets} --minutes {args.minutes:g} "
        f"--interval {args.interval:g} --server {args.server}"
        + (f" --items {args.items}" if args.items else "")
    )
    report = "\n\n".join(
        [
            "## Soak: sockets sending events and recommend requests",
            f"`{command}` on {date.today()}, {os.cpu_count()} cores, data "
            f"`{data.name}` (events on {len(items)} items), one {args.server} process "
            "with DEBUG off, SQLite, in-memory channel layer, the load generator "
            "on the same machine. Each socket alternates an event and a "
            "recommend request.",
            table(rows),
            summary(rows, checked, stats, failures),
        ]
    )
    print(report)
    if not args.no_results:
        label = f"{args.server} {args.sockets}x{args.interval:g}s"
        label += f" items={args.items}" if args.items else ""
        write_results(report, label)
        print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    if checked["lost"] or checked["stored_twice"]:
        raise SystemExit("acknowledged events were lost or stored twice")


if __name__ == "__main__":
    main()
