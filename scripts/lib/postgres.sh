# shellcheck shell=bash
# scripts/lib/postgres.sh: the PostgreSQL shards of the selected stack (stack.sh): their
# directories, initdb and settings, start and stop through pg_ctl, the cartshard database.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# Where PostgreSQL's files go when the postgres user cannot reach the repo (e.g. a clone in /root).
PG_FALLBACK_ROOT=/var/lib/cartshard

# Shard i lives in <stack>/pg<i>/ (or a symlink to the fallback root), holding data/
# (PGDATA), run/ (the unix socket, owned by postgres) and postgresql.log.

as_postgres() {
    # From /, so that postgres never needs to reach the caller's working directory.
    (cd / && runuser -u postgres -- "$@")
}

# The directory of shard $1's files, resolved (no symlinks: postgres may not cross .stack/).
pg_dir() {
    readlink -f "$S_DIR/pg$1"
}

# Where this stack's PostgreSQL files go when postgres cannot reach the stack's directory.
pg_fallback_dir() {
    echo "$PG_FALLBACK_ROOT/$(printf '%s' "$S_DIR" | sha256sum | cut -c1-12)"
}

# Creates <stack>/pg$1: a directory owned by postgres, or a symlink into the fallback root when the
# postgres user cannot traverse the stack's path (a clone under /root) or the path is too long for
# a unix socket (108 bytes with the socket's own name).
pg_make_dir() {
    local link=$S_DIR/pg$1 target
    if [[ -L $link && ! -e $link ]]; then
        rm -f "$link" # its fallback directory was deleted by hand
    fi
    if [[ -e $link ]]; then
        return 0
    fi
    if as_postgres test -x "$S_DIR" && ((${#S_DIR} < 80)); then
        mkdir -p "$link"
    else
        target=$(pg_fallback_dir)/pg$1
        mkdir -p "$PG_FALLBACK_ROOT"
        chmod 755 "$PG_FALLBACK_ROOT"
        mkdir -p "$target"
        chmod 755 "$(dirname "$target")"
        rm -rf "$link"
        ln -s "$target" "$link"
        say "pg$1: the postgres user cannot use $S_DIR, so its files are in $target"
    fi
    chown postgres:postgres "$(pg_dir "$1")"
    chmod 700 "$(pg_dir "$1")"
}

# Creates the cluster of shard $1 (initdb and our settings) unless it exists.
pg_init() {
    local i=$1 dir
    pg_make_dir "$i"
    dir=$(pg_dir "$i")
    ln -sfn "$dir/postgresql.log" "$(logfile "pg$i")"
    if [[ -f $dir/data/PG_VERSION ]]; then
        return 0
    fi
    as_postgres rm -rf "$dir/data"
    as_postgres mkdir -p "$dir/run"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=trust >"$dir/initdb.log" 2>&1 ||
        {
            cat "$dir/initdb.log" >&2
            die "pg$i: initdb failed"
        }
    # Trust only TCP from 127.0.0.1; the unix socket checks the OS user (peer).
    as_postgres tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
# scripts/dev: a development shard, reachable only from this machine.
local all all peer
host  all all 127.0.0.1/32 trust
EOF
    as_postgres tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# --- scripts/dev (cartshard development shard $i); the port is given by pg_ctl -o -p ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = 1000
EOF
    say "pg$i: initialized $dir/data"
}

pg_running() {
    local dir
    dir=$(pg_dir "$1")
    [[ -f $dir/data/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

psql_shard() {
    local port=$1
    shift
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# Starts shard $1 unless it runs, and makes sure database cartshard exists.
pg_start() {
    local i=$1 port=${S_PG_PORTS[$1]} dir
    dir=$(pg_dir "$i")
    if pg_running "$i"; then
        say "pg$i already running (port $port)"
    else
        if port_busy "$port"; then
            die "pg$i: port $port is in use by another process (see \`scripts/dev help\` to change it)"
        fi
        if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -o "-p $port" -w -t 60 \
            start >/dev/null; then
            show_log_tail "pg$i"
            die "pg$i: PostgreSQL did not start"
        fi
        say "started pg$i (port $port, log $(logfile "pg$i"))"
    fi
    head -n 1 "$dir/data/postmaster.pid" >"$(pidfile "pg$i")"
    if [[ -z $(psql_shard "$port" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'cartshard'") ]]; then
        PGCONNECT_TIMEOUT=5 "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres cartshard
        say "pg$i: created database cartshard"
    fi
}

pg_stop() {
    local i=$1 dir
    [[ -e $S_DIR/pg$i ]] || return 0
    dir=$(pg_dir "$i")
    if pg_running "$i"; then
        if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" stop -m fast -w -t "$STOP_TIMEOUT" >/dev/null; then
            warn "pg$i did not stop in ${STOP_TIMEOUT}s: immediate shutdown"
            as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" stop -m immediate -w -t "$STOP_TIMEOUT" >/dev/null || true
        fi
        say "stopped pg$i"
    fi
    rm -f "$(pidfile "pg$i")"
}

# Brings up every shard: both are initialized and started in parallel (initdb is the slow part).
pg_up() {
    local i pids=() rc=0
    for i in "${!S_PG_PORTS[@]}"; do
        (
            pg_init "$i"
            pg_start "$i"
        ) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || rc=1
    done
    ((rc == 0)) || die "a PostgreSQL shard did not come up"
}
