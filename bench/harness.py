"""What the benchmark scripts share: a throwaway project and real servers."""

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup_django(workdir, keep_services=False):
    """Point the project at an empty folder of its own and migrate it.

    Unless `keep_services`, DATABASE_URL and REDIS_URL are dropped, so the
    figures come from the embedded defaults and touch nothing shared.
    """
    os.environ["RTREC_VAR_DIR"] = str(workdir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
    if not keep_services:
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
    warnings.filterwarnings("ignore", message="SECRET_KEY is not set")

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def setup_django_here():
    """Set Django up on the environment as it is: no migration, no change
    of database, for scripts that talk to servers already running."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rtrec_site.settings")
    warnings.filterwarnings("ignore", message="SECRET_KEY is not set")
    import django

    django.setup()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SITE_APPLICATION = "rtrec_site.asgi:application"


def start_server(
    port,
    env=None,
    server="daphne",
    application=SITE_APPLICATION,
    open_files=None,
    log_path=None,
):
    """A server process on 127.0.0.1:port, returned once it accepts.

    With `open_files`, the server first raises its own soft limit on open
    files to that many (or the hard limit, if lower), for idle-socket runs.
    With `log_path`, what it prints goes to that file.
    """
    command = {
        "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port)],
        "uvicorn": [
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    }[server]
    if open_files is not None:
        command = [str(BENCH / "with_open_files.py"), str(open_files), *command]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [sys.executable, *command, application],
            cwd=ROOT,
            env=dict(env or os.environ),
            stdout=log,
            stderr=log,
        )
    finally:
        if log_path:
            log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server on port {port} did not start within 30 s")


def stop_server(process, timeout=15):
    """Ask a server to stop, and make sure it did."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def server_env(var_dir, **overrides):
    """The environment of a bench server: its own folder, no throttling of
    the load generator, and no shared services unless asked for."""
    env = dict(os.environ, RTREC_VAR_DIR=str(var_dir))
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        DEBUG="false",
        LOG_LEVEL="WARNING",
        RTREC_WS_RATE="1000000",
        RTREC_WS_BURST="1000000",
        # Every bench client comes from 127.0.0.1, as a fleet's users do not.
        RTREC_WS_MAX_SOCKETS_PER_ADDRESS="0",
    )
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def rss_kib(pid):
    """Resident memory of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid):
    """User plus system CPU time a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which may itself hold spaces.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_open_files(wanted):
    """Raise this process's soft limit on open files towards `wanted`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spread(samples):
    """Median, min, max and count of a list of measurements."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
    }


def manage(var_dir, *arguments, env=None):
    """Run a management command in its own process on `var_dir`'s
    database; returns its output, and stops the bench if it failed."""
    finished = subprocess.run(
        [sys.executable, "manage.py", *map(str, arguments)],
        cwd=ROOT,
        env=env or server_env(var_dir),
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if finished.returncode != 0:
        sys.stderr.write(finished.stderr[-4000:])
        raise SystemExit(f"manage.py {arguments[0]} failed")
    return finished.stdout


def run_measured(script, *arguments, env, timeout=3600):
    """Run a Python script of the project in its own process; returns
    (wall seconds, peak resident memory in KiB, what it printed)."""
    with tempfile.TemporaryDirectory(prefix="rtrec-peak-") as folder:
        peak_path = Path(folder) / "peak.json"
        command = [
            sys.executable,
            str(BENCH / "peak_memory.py"),
            str(peak_path),
            str(script),
            *map(str, arguments),
        ]
        started = time.perf_counter()
        finished = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - started
        if finished.returncode != 0:
            sys.stderr.write(finished.stderr[-3000:])
            raise SystemExit(f"{script} {' '.join(map(str, arguments))} failed")
        peak = json.loads(peak_path.read_text())["peak_kib"]
    return seconds, peak, finished.stdout
