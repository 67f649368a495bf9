#!/usr/bin/env bash
# Scale-out, for real on one machine: two server processes on two ports
# sharing one PostgreSQL database and one Redis, then the load generator
# against one process and against the pair. Everything it starts it
# stops; the database it creates it drops.
#
#     bash bench/scale_out.sh [SECONDS] [CLIENTS]
#
# PostgreSQL is reached as postgres@127.0.0.1:5432 (PGHOST, PGPORT,
# PGUSER to change it) and Redis at 127.0.0.1:6379, database
# RTREC_BENCH_REDIS_DB (12): a run flushes that Redis database.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${1:-5}
CLIENTS=${2:-20}
PYTHON=${PYTHON:-.venv/bin/python}
SERVER=${RTREC_BENCH_SERVER:-uvicorn}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
REDIS_DB=${RTREC_BENCH_REDIS_DB:-12}
DB_NAME="rtrec_scale_$$"
WORKDIR=$(mktemp -d -t rtrec-scale-XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    # A graceful shutdown may wait on open sockets: 10 s, then KILL.
    for _ in $(seq 20); do
        alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    dropdb --if-exists "$DB_NAME" 2>/dev/null || true
    redis-cli -h 127.0.0.1 -n "$REDIS_DB" flushdb >/dev/null 2>&1 || true
    rm -rf "$WORKDIR"
}
trap cleanup EXIT

wait_for() {  # wait_for DESCRIPTION COMMAND...: at most 30 s
    local what=$1
    shift
    for _ in $(seq 60); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    echo "$what did not come up within 30 s" >&2
    exit 1
}

# The services: used as they are when they answer, started otherwise.
if ! pg_isready -q; then
    echo "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -1)" main start
    else
        service postgresql start
    fi
    wait_for PostgreSQL pg_isready -q
fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 \
        --save "" --appendonly no
    wait_for Redis redis-cli -h 127.0.0.1 ping
fi

# A throwaway database, migrated and loaded, and a model trained on it.
createdb "$DB_NAME"
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB_NAME"
export REDIS_URL="redis://127.0.0.1:6379/$REDIS_DB"
export RTREC_VAR_DIR="$WORKDIR" RTREC_MODEL_DIR="$WORKDIR/models"
export SECRET_KEY=${SECRET_KEY:-$("$PYTHON" -c "import secrets; print(secrets.token_urlsafe(50))")}
export DEBUG=false LOG_LEVEL=WARNING RTREC_WS_RATE=1000000 RTREC_WS_BURST=1000000
# All the load comes from 127.0.0.1 here; one BLAS thread per process (see
# docs/scaling.md).
export RTREC_WS_MAX_SOCKETS_PER_ADDRESS=0 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
"$PYTHON" manage.py migrate --noinput -v0
DATA=${RTREC_DATA:-../shared/data/ml-100k}
if [[ -d "$DATA" ]]; then
    "$PYTHON" manage.py import_movielens "$DATA"
else
    "$PYTHON" manage.py generate_synthetic --size ml-100k
fi
"$PYTHON" manage.py train --feedback explicit | head -1

# Two server processes, each on its own port, sharing both services.
PORTS=()
for _ in 1 2; do
    port=$("$PYTHON" -c "import sys; sys.path.insert(0, 'bench'); \
from harness import free_port; print(free_port())")
    if [[ $SERVER == daphne ]]; then
        "$PYTHON" -m daphne -b 127.0.0.1 -p "$port" bench.echo:application \
            >"$WORKDIR/server-$port.log" 2>&1 &
    else
        "$PYTHON" -m uvicorn --host 127.0.0.1 --port "$port" --no-access-log \
            --log-level warning bench.echo:application \
            >"$WORKDIR/server-$port.log" 2>&1 &
    fi
    PIDS+=($!)
    PORTS+=("$port")
    wait_for "the server on port $port" \
        "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)"
done
echo "servers ($SERVER) on ports ${PORTS[*]}, database $DB_NAME, Redis db $REDIS_DB"

for kind in echo recommend event; do
    "$PYTHON" bench/loadgen.py --ports "${PORTS[0]}" --kind "$kind" \
        --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" | sed 's/^/one process: /'
    "$PYTHON" bench/loadgen.py --ports "${PORTS[@]}" --kind "$kind" \
        --clients "$CLIENTS" --seconds "$SECONDS_PER_RUN" | sed 's/^/the pair:    /'
done
"$PYTHON" bench/loadgen.py --ports "${PORTS[@]}" --kind push --clients 2 \
    --seconds 1 | sed 's/^/across:      /'
