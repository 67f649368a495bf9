"""WebSocket round trips under load, against the bare echo consumer.

Every server under test runs `bench.echo:application` (the site plus the
echo consumer) on the same database at the same time, and each repeat
runs echo, recommend and event against each server in turn, so every
ratio compares figures taken within seconds of each other.
"""

import sys
from pathlib import Path

from harness import cpu_seconds, free_port, server_env, start_server, stop_server
from loadgen import KINDS, run, run_load

APPLICATION = "bench.echo:application"


def measure_round_trips(var_dir, variants, tokens, items, seconds, repeat):
    """{variant label: {kind: [LoadResult per repeat]}}.

    `variants` maps a label to (server, extra environment).
    """
    servers = {}
    try:
        for label, (server, extra) in variants.items():
            port = free_port()
            process = start_server(
                port,
                server_env(var_dir, **extra),
                server,
                APPLICATION,
                open_files=4096,
                log_path=var_dir / f"server-{port}.log",
            )
            servers[label] = (process, f"ws://127.0.0.1:{port}")

        for _, base_url in servers.values():
            # Loads the model and the catalog, warms the caches.
            for kind in KINDS:
                run(run_load([base_url], kind, tokens, min(seconds, 1.0), items))

        results = {label: {kind: [] for kind in KINDS} for label in servers}
        for n in range(repeat):
            for label, (process, base_url) in servers.items():
                for kind in KINDS:
                    cpu_before = cpu_seconds(process.pid)
                    result = run(
                        run_load([base_url], kind, tokens, seconds, items, seed=n)
                    )
                    result.server_cpu_seconds = cpu_seconds(process.pid) - cpu_before
                    results[label][kind].append(result)
        for label, (process, _) in servers.items():
            report_if_exited(label, process, var_dir)
        return results
    finally:
        for process, _ in servers.values():
            stop_server(process)


def report_if_exited(label, process, var_dir):
    """Say so, with the end of its log, when a server died during the runs:
    its figures are then a failure's, not a measurement."""
    if process.poll() is None:
        return
    logs = sorted(Path(var_dir).glob("server-*.log"))
    tails = "\n".join(path.read_text(errors="replace")[-1500:] for path in logs)
    print(
        f"the {label} server exited with {process.returncode} during the runs\n{tails}",
        file=sys.stderr,
    )
