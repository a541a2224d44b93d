#!/bin/sh
# Start a throw-away PostgreSQL cluster configured for the machine, beside the system one, for benchmarks:
#   bench/pg_tuned.sh start   → prints the LABES_TEST_DATABASE_URL to use
#   bench/pg_tuned.sh stop
# Settings follow PostgreSQL's own guidance (shared_buffers about a quarter of RAM; checkpoints spaced so a
# bulk load is not dominated by full-page images). The system cluster keeps Debian's defaults.
set -eu
BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
DIR=${PG_TUNED_DIR:-/tmp/labes-pg-tuned}
PORT=${PG_TUNED_PORT:-5433}
RUN_AS=""
[ "$(id -u)" = 0 ] && RUN_AS="runuser -u postgres --"
case "${1:-start}" in
start)
    if [ ! -f "$DIR/PG_VERSION" ]; then
        mkdir -p "$DIR" && [ -n "$RUN_AS" ] && chown postgres "$DIR"
        $RUN_AS "$BIN/initdb" -D "$DIR" -U postgres -A trust >/dev/null
        ram_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
        cat >>"$DIR/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
shared_buffers = $((ram_mb / 4))MB
effective_cache_size = $((ram_mb / 2))MB
max_wal_size = 16GB
checkpoint_timeout = 15min
wal_compression = lz4
CONF
    fi
    $RUN_AS "$BIN/pg_ctl" -D "$DIR" -l "$DIR/log" -w start >/dev/null
    $RUN_AS "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qtc "SELECT 1 FROM pg_database WHERE datname = 'bench'" | grep -q 1 \
        || $RUN_AS "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
    echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/bench"
    ;;
stop)
    $RUN_AS "$BIN/pg_ctl" -D "$DIR" -w stop >/dev/null && echo stopped
    ;;
esac
