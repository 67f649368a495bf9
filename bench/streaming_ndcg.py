"""How good is the pushed list while a new user is still clicking?

On MovieLens 100K: hold out 10% of the users entirely (seeded), train on
the rest, start a real server, then replay each held-out user's ratings
in time order over the WebSocket, as `rate` events. After their 1st, 5th
and 10th event, the list the server pushes is scored with NDCG@10 against
the items that user rated later. Plain popularity (rating counts of the
training users, minus what the user has seen) is scored on the same
users at the same points.

    python bench/streaming_ndcg.py [--feedback implicit explicit] [--json]
"""

import argparse
import asyncio
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import free_port, setup_django, start_server

POINTS = (1, 5, 10)
TRAIN_FLAGS = {
    "auto": ["--feedback", "auto"],
    "explicit": ["--feedback", "explicit"],
    "implicit": ["--feedback", "implicit"],
    "ease": ["--algorithm", "ease"],
}
K = 10


def ndcg_at_k(ranked, relevant, k=K):
    gains = sum(
        1 / np.log2(position + 2)
        for position, item in enumerate(ranked[:k])
        if item in relevant
    )
    ideal = sum(1 / np.log2(position + 2) for position in range(min(k, len(relevant))))
    return gains / ideal if ideal else 0.0


def hold_out_users(fraction, seed):
    """Take the held-out users' interactions out of the database."""
    from events.models import EndUser, Interaction

    user_ids = sorted(EndUser.objects.values_list("external_id", flat=True), key=int)
    drawn = np.random.default_rng(seed).random(len(user_ids)) < fraction
    held_out = [u for u, out in zip(user_ids, drawn, strict=True) if out]

    streams = {}
    rows = Interaction.objects.filter(user__external_id__in=held_out).values_list(
        "user__external_id", "item__external_id", "value", "created_at"
    )
    for user, item, value, created in rows:
        streams.setdefault(user, []).append((created, int(item), item, value))
    Interaction.objects.filter(user__external_id__in=held_out).delete()
    return {
        user: [(item, value) for _, _, item, value in sorted(events)]
        for user, events in streams.items()
    }


def popularity_lists(streams):
    from django.db.models import Count

    from events.models import Item

    counts = Item.objects.annotate(n=Count("interactions")).values_list(
        "external_id", "n"
    )
    ranked = [item for item, _ in sorted(counts, key=lambda row: (-row[1], row[0]))]

    lists = {}
    for user, events in streams.items():
        for point in POINTS:
            seen = {item for item, _ in events[:point]}
            lists[user, point] = [i for i in ranked if i not in seen][:K]
    return lists


async def stream_user(url, token, user, events, prefix):
    import websockets

    lists, latencies = {}, []
    async with websockets.connect(f"{url}?token={token}") as connection:
        for position, (item, value) in enumerate(events[: max(POINTS)], start=1):
            event = {
                "type": "event",
                "event": "rate",
                "item": item,
                "value": value,
                "event_id": f"{prefix}-{user}-{position}",
            }
            started = time.perf_counter()
            await connection.send(json.dumps(event))
            pushed = None
            while pushed is None:
                reply = json.loads(await asyncio.wait_for(connection.recv(), 30))
                if reply["type"] == "error":
                    raise SystemExit(f"server refused an event: {reply}")
                if reply["type"] == "recommendations":
                    pushed = reply
            latencies.append(time.perf_counter() - started)
            if position in POINTS:
                lists[position] = (
                    [i["id"] for i in pushed["items"]],
                    pushed["strategy"],
                )
    return lists, latencies


async def stream_all(port, streams, prefix):
    from events.tokens import make_ws_token

    url = f"ws://127.0.0.1:{port}/ws/recommendations/"
    lists, latencies, strategies = {}, [], {}
    for user, events in streams.items():
        token = make_ws_token(f"{prefix}-{user}", 3600)
        user_lists, user_latencies = await stream_user(url, token, user, events, prefix)
        latencies.extend(user_latencies)
        for point, (items, strategy) in user_lists.items():
            lists[user, point] = items
            strategies.setdefault(point, set()).add(strategy)
    return lists, latencies, strategies


def scored(lists, streams):
    result = {}
    for point in POINTS:
        values = [
            ndcg_at_k(lists[user, point], {item for item, _ in events[point:]})
            for user, events in streams.items()
            if len(events) > point and (user, point) in lists
        ]
        result[point] = float(np.mean(values))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["auto", "explicit", "ease"],
        help="train settings to compare: a --feedback value, or ease",
    )
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rtrec-stream-") as workdir:
        setup_django(Path(workdir))
        from django.conf import settings
        from django.core.management import call_command

        call_command(
            "import_movielens", str(settings.RTREC["DATA_DIR"]), stdout=io.StringIO()
        )
        streams = hold_out_users(args.fraction, args.seed)
        report = {
            "users": len(streams),
            "popularity": scored(popularity_lists(streams), streams),
        }

        port = free_port()
        server = None
        try:
            for feedback in args.models:
                call_command("train", *TRAIN_FLAGS[feedback], stdout=io.StringIO())
                if server is None:
                    server = start_server(port)
                else:
                    time.sleep(1.5)  # the running server picks up the new version
                lists, latencies, strategies = asyncio.run(
                    stream_all(port, streams, feedback)
                )
                report[feedback] = scored(lists, streams)
                report[f"{feedback}_round_trip_ms_p50"] = 1e3 * float(
                    np.median(latencies)
                )
                report[f"{feedback}_strategies"] = {
                    p: sorted(s) for p, s in strategies.items()
                }
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)

    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_table(report, args.models)


def print_table(report, feedbacks):
    print(f"{report['users']} held-out users, NDCG@{K} of the pushed list")
    print(f"{'after event':<28}" + "".join(f"{p:>10}" for p in POINTS))
    popularity = report["popularity"]
    print(f"{'popularity':<28}" + "".join(f"{popularity[p]:>10.4f}" for p in POINTS))
    for feedback in feedbacks:
        figures = report[feedback]
        print(
            f"{'fold-in, ' + feedback + ' model':<28}"
            + "".join(f"{figures[p]:>10.4f}" for p in POINTS)
        )
        print(
            f"{'  ratio to popularity':<28}"
            + "".join(f"{figures[p] / popularity[p]:>10.2f}" for p in POINTS)
        )
    for feedback in feedbacks:
        print(
            f"event round trip p50 ({feedback}): "
            f"{report[feedback + '_round_trip_ms_p50']:.2f} ms; strategies "
            f"{report[feedback + '_strategies']}"
        )


if __name__ == "__main__":
    main()
