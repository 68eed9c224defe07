# shellcheck shell=bash
# scripts/lib/stack.sh: the stacks: their selection and ports, process tracking, Redis, NATS and
# the services, stack_up / stack_down, and the commands that work on the dev stack (up, down, env,
# logs) or any (stack-up). The PostgreSQL shards are in postgres.sh.
#
# A "stack" is a directory (.stack/ for `up`, .stack-test/ for `test`, .stack-bench/ for `bench`,
# .stack-soak/ for `soak`) and a set of ports. Every process a stack runs is tracked by pid in <stack>/pids/<name>.pid and
# logs to <stack>/logs/<name>.log; PostgreSQL is driven through pg_ctl. stack_select picks a
# stack, and stack_up / stack_down work on whichever is selected, so `test` runs the same code as
# `up`.

READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=15

# ---------------------------------------------------------------------------------------------
# stack selection: sets the S_* variables that every function below (and postgres.sh, test.sh,
# bench.sh, soak.sh) uses

stack_select() {
    case $1 in
    dev)
        S_NAME="dev"
        S_STORE_ENV=()
        S_GATEWAY_ENV=()
        S_DIR=$ROOT/.stack
        set_ports "" 8080 9101 9102 4222 8222 6380 5433 5434 9201
        ;;
    test)
        S_NAME="test"
        S_DIR=$ROOT/.stack-test
        set_ports TEST_ 18080 19101 19102 14222 18222 16380 15433 15434 19201
        # The expiry test backdates a cart and waits for the workers' next look; the bus suite's
        # stalled partition is restarted after 1 s instead of 10.
        S_STORE_ENV=(CART_EXPIRY_INTERVAL_MS=300 CART_STORE_STALL_MS=1000)
        # Every suite runs from 127.0.0.1, one client to the limiter: access-control (and
        # read-path's Redis outage) start their own gateways with small limits.
        S_GATEWAY_ENV=(RATE_LIMIT_RPS=1000000 RATE_LIMIT_BURST=1000000)
        ;;
    soak)
        S_NAME="soak"
        S_DIR=$ROOT/.stack-soak
        set_ports SOAK_ 48080 49101 49102 44222 48222 46380 45433 45434 49201
        S_STORE_ENV=()
        # The load comes from one address: the limiter still runs (a Redis script per request)
        # but never refuses.
        S_GATEWAY_ENV=(RATE_LIMIT_RPS=1000000 RATE_LIMIT_BURST=1000000)
        ;;
    bench)
        S_NAME="bench"
        S_DIR=$ROOT/.stack-bench
        set_ports BENCH_ 38080 39101 39102 34222 38222 36380 35433 35434 39201
        S_STORE_ENV=()
        # The load comes from one address, which the limiter would cap at one client's budget;
        # two event-loop threads, one per core of the machine the targets are set for.
        S_GATEWAY_ENV=(RATE_LIMIT_RPS=0 GATEWAY_THREADS=2)
        ;;
    *) die "unknown stack $1" ;;
    esac
    S_PARTITIONS=${CART_PARTITIONS:-32}
    # nats-server's Go scheduler threads. One: on a small machine shared with every other server
    # of the stack, a second one mostly spins looking for work between messages (measured: 30 %
    # of nats-server's CPU per committed add at 2,000/s, the same throughput; docs/performance.md).
    S_NATS_GOMAXPROCS=${NATS_GOMAXPROCS:-1}
    [[ $S_NATS_GOMAXPROCS =~ ^[1-9][0-9]{0,2}$ ]] || die "NATS_GOMAXPROCS: expected 1 to 999 threads, got '$S_NATS_GOMAXPROCS'"
    S_NATS_URL=nats://127.0.0.1:$S_NATS_PORT
    S_REDIS_URL=redis://127.0.0.1:$S_REDIS_PORT
    S_GATEWAY_URL=http://127.0.0.1:$S_GATEWAY_PORT
    S_STATS_URL=http://127.0.0.1:$S_STATS_PORT
    local dsns=() port
    for port in "${S_PG_PORTS[@]}"; do
        dsns+=("postgresql://postgres@127.0.0.1:$port/cartshard")
    done
    S_SHARD_DSNS=$(
        IFS=,
        echo "${dsns[*]}"
    )
}

# set_ports PREFIX gateway admin1 admin2 nats nats-monitor redis pg0 pg1 stats: defaults, each
# overridable by the variable PREFIX<NAME>.
set_ports() {
    local p=$1
    local v
    v=${p}GATEWAY_PORT && S_GATEWAY_PORT=${!v:-$2}
    v=${p}CART_STORE_ADMIN_PORT_1 && local a1=${!v:-$3}
    v=${p}CART_STORE_ADMIN_PORT_2 && local a2=${!v:-$4}
    v=${p}NATS_PORT && S_NATS_PORT=${!v:-$5}
    v=${p}NATS_MONITOR_PORT && S_NATS_MONITOR_PORT=${!v:-$6}
    v=${p}REDIS_PORT && S_REDIS_PORT=${!v:-$7}
    v=${p}PG_PORT_0 && local pg0=${!v:-$8}
    v=${p}PG_PORT_1 && local pg1=${!v:-$9}
    v=${p}CART_STATS_PORT && S_STATS_PORT=${!v:-${10}}
    S_ADMIN_PORTS=("$a1" "$a2")
    S_PG_PORTS=("$pg0" "$pg1")
    local port
    for port in "$S_GATEWAY_PORT" "$a1" "$a2" "$S_NATS_PORT" "$S_NATS_MONITOR_PORT" "$S_REDIS_PORT" "$pg0" "$pg1" \
        "$S_STATS_PORT"; do
        if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            die "bad port '$port' (expected 1..65535)"
        fi
    done
}

# The export lines of the selected stack.
stack_env_lines() {
    local q="'"
    # Single-quoted, so that any POSIX shell reads them back as they are.
    printf "export GATEWAY_URL='%s'\n" "${S_GATEWAY_URL//$q/$q\\$q$q}"
    printf "export NATS_URL='%s'\n" "${S_NATS_URL//$q/$q\\$q$q}"
    printf "export REDIS_URL='%s'\n" "${S_REDIS_URL//$q/$q\\$q$q}"
    printf "export SHARD_DSNS='%s'\n" "${S_SHARD_DSNS//$q/$q\\$q$q}"
    printf "export CART_PARTITIONS='%s'\n" "${S_PARTITIONS//$q/$q\\$q$q}"
    printf "export STATS_URL='%s'\n" "${S_STATS_URL//$q/$q\\$q$q}"
}

# ---------------------------------------------------------------------------------------------
# process tracking

pidfile() { echo "$S_DIR/pids/$1.pid"; }
logfile() { echo "$S_DIR/logs/$1.log"; }

# running_pid NAME COMM: prints the pid recorded for NAME if that process is alive, runs the
# program COMM and belongs to this stack (its working directory is inside the stack's directory);
# fails otherwise. Pids get reused, so a live pid alone proves nothing.
running_pid() {
    local f pid comm stat cwd real
    f=$(pidfile "$1")
    [[ -r $f ]] || return 1
    read -r pid <"$f" || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$2" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]] || return 1
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    real=$(cd "$S_DIR" 2>/dev/null && pwd -P) || return 1
    [[ $cwd == "$real" || $cwd == "$real"/* ]] || return 1
    echo "$pid"
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_proc NAME COMM PORT COMMAND...: starts COMMAND in the background in its own session (so it
# outlives this script and holds none of its descriptors) with the stack's directory as its working
# directory, unless NAME is already running. PORT is checked to be free first.
start_proc() {
    local name=$1 comm=$2 port=$3 pid
    shift 3
    if pid=$(running_pid "$name" "$comm"); then
        say "$name already running (pid $pid)"
        return 0
    fi
    if port_busy "$port"; then
        die "$name: port $port is in use by another process (see \`scripts/dev help\` to change it)"
    fi
    (
        cd "$S_DIR" || exit
        setsid "$@" </dev/null >>"$(logfile "$name")" 2>&1 &
        echo $! >"$(pidfile "$name")"
    )
    say "started $name (pid $(cat "$(pidfile "$name")"), log $(logfile "$name"))"
}

# stop_proc NAME COMM: SIGTERM, up to STOP_TIMEOUT s to exit, then SIGKILL.
stop_proc() {
    local name=$1 comm=$2 pid i
    if pid=$(running_pid "$name" "$comm"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            running_pid "$name" "$comm" >/dev/null || break
            sleep 0.1
        done
        if running_pid "$name" "$comm" >/dev/null; then
            warn "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        say "stopped $name"
    fi
    rm -f "$(pidfile "$name")"
}

# Prints the last lines of NAME's log, to explain a failure.
show_log_tail() {
    local f
    f=$(logfile "$1")
    if [[ -e $f ]]; then
        warn "last lines of $f:"
        tail -n "${2:-40}" "$f" | sed 's/^/    /' >&2
    fi
}

# ---------------------------------------------------------------------------------------------
# Redis and NATS

redis_up() {
    mkdir -p "$S_DIR/redis"
    start_proc redis redis-server "$S_REDIS_PORT" \
        redis-server --bind 127.0.0.1 --port "$S_REDIS_PORT" --dir "$S_DIR/redis" --appendonly yes \
        --daemonize no --protected-mode yes --logfile ""
}

nats_up() {
    mkdir -p "$S_DIR/nats"
    if ! running_pid nats nats-server >/dev/null && port_busy "$S_NATS_MONITOR_PORT"; then
        die "nats: monitoring port $S_NATS_MONITOR_PORT is in use by another process"
    fi
    start_proc nats nats-server "$S_NATS_PORT" \
        env GOMAXPROCS="$S_NATS_GOMAXPROCS" nats-server -a 127.0.0.1 -p "$S_NATS_PORT" -m "$S_NATS_MONITOR_PORT" -js -sd "$S_DIR/nats" \
        -n "cartshard-$S_NAME"
}

# wait_until NAME COMM DESCRIPTION COMMAND...: runs COMMAND until it succeeds; fails with NAME's
# log when NAME exits or READY_TIMEOUT runs out.
wait_until() {
    local name=$1 comm=$2 what=$3 deadline=$((SECONDS + READY_TIMEOUT))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if [[ -n $comm ]] && ! running_pid "$name" "$comm" >/dev/null; then
            show_log_tail "$name"
            die "$name exited before it was $what"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$name"
            die "$name was not $what after ${READY_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$S_REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
http_200() { [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true) == 200 ]]; }

# The gateway's /readyz is 200 whatever its shared dependencies do (it connects to them in the
# background); the stack is up once its body also reports NATS and Redis reached, so that the
# first request after `up` finds them.
gateway_connected() {
    local body
    body=$(curl -s -m 2 "$1") || return 1
    [[ $body == *'"nats":true'* && $body == *'"redis":true'* ]]
}

# ---------------------------------------------------------------------------------------------
# the services

# service_env: the environment every service gets (printed as NAME=value lines, one per line).
service_env() {
    printf '%s\n' "NATS_URL=$S_NATS_URL" "REDIS_URL=$S_REDIS_URL" "SHARD_DSNS=$S_SHARD_DSNS" \
        "CART_PARTITIONS=$S_PARTITIONS"
}

migrate() {
    local envs
    mapfile -t envs < <(service_env)
    say "migrating (cart-store migrate)"
    if ! (cd "$S_DIR" && env "${envs[@]}" "$STORE_BIN" migrate </dev/null >>"$(logfile migrate)" 2>&1); then
        show_log_tail migrate
        die "cart-store migrate failed"
    fi
}

services_up() {
    local envs i
    mapfile -t envs < <(service_env)
    start_proc gateway cart-gateway "$S_GATEWAY_PORT" \
        env "${envs[@]}" GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$S_GATEWAY_PORT" "${S_GATEWAY_ENV[@]}" "$GATEWAY_BIN"
    for i in "${!S_ADMIN_PORTS[@]}"; do
        start_proc "cs-$((i + 1))" cart-store "${S_ADMIN_PORTS[$i]}" \
            env "${envs[@]}" CART_STORE_ID="cs-$((i + 1))" CART_STORE_ADMIN_HOST=127.0.0.1 \
            CART_STORE_ADMIN_PORT="${S_ADMIN_PORTS[$i]}" "${S_STORE_ENV[@]}" "$STORE_BIN"
    done
    start_proc cart-stats cart-stats "$S_STATS_PORT" \
        env "${envs[@]}" CART_STATS_ID=stats-1 CART_STATS_HOST=127.0.0.1 CART_STATS_PORT="$S_STATS_PORT" "$STATS_BIN"
    wait_until gateway cart-gateway ready http_200 "$S_GATEWAY_URL/readyz"
    wait_until gateway cart-gateway "connected to NATS and Redis" gateway_connected "$S_GATEWAY_URL/readyz"
    for i in "${!S_ADMIN_PORTS[@]}"; do
        wait_until "cs-$((i + 1))" cart-store ready http_200 "http://127.0.0.1:${S_ADMIN_PORTS[$i]}/readyz"
    done
    wait_until cart-stats cart-stats ready http_200 "$S_STATS_URL/readyz"
}

# ---------------------------------------------------------------------------------------------
# whole stacks

stack_up() {
    [[ -x $GATEWAY_BIN && -x $STORE_BIN && -x $STATS_BIN ]] || die "the services are not built (run scripts/dev up)"
    mkdir -p "$S_DIR/pids" "$S_DIR/logs"
    stack_env_lines >"$S_DIR/env"
    pg_up
    redis_up
    nats_up
    wait_until redis redis-server "answering PING" redis_ping
    wait_until nats nats-server "healthy" http_200 "http://127.0.0.1:$S_NATS_MONITOR_PORT/healthz"
    migrate
    services_up
}

# The PostgreSQL fallback directory this stack uses, if any (from the pg<i> symlinks).
stack_fallback_dirs() {
    local link
    for link in "$S_DIR"/pg*; do
        if [[ -L $link ]]; then
            dirname "$(readlink "$link")"
        fi
    done
    if [[ -d $(pg_fallback_dir) ]]; then
        pg_fallback_dir
    fi
}

stack_down() {
    local purge=${1:-} i dirs
    if [[ ! -d $S_DIR ]]; then
        say "nothing to stop: $S_DIR does not exist"
        return 0
    fi
    stop_proc cart-stats cart-stats
    for i in "${!S_ADMIN_PORTS[@]}"; do
        stop_proc "cs-$((i + 1))" cart-store
    done
    stop_proc gateway cart-gateway
    stop_proc nats nats-server
    stop_proc redis redis-server
    for i in "${!S_PG_PORTS[@]}"; do
        pg_stop "$i"
    done
    if [[ $purge == --purge ]]; then
        mapfile -t dirs < <(stack_fallback_dirs | sort -u)
        for i in "${dirs[@]}"; do
            # Only ever our own directory under the fallback root.
            [[ $i == "$PG_FALLBACK_ROOT"/* ]] && rm -rf "$i"
        done
        rmdir "$PG_FALLBACK_ROOT" 2>/dev/null || true
        rm -rf "$S_DIR"
        say "deleted $S_DIR"
    fi
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
    need_root up "$@"
    ensure_packages
    build
    stack_select dev
    stack_up
    cat <<EOF

cartshard is up: $S_GATEWAY_URL   (workers: http://127.0.0.1:${S_ADMIN_PORTS[0]}, http://127.0.0.1:${S_ADMIN_PORTS[1]};
  statistics: $S_STATS_URL/v1/stats, dashboard $S_STATS_URL/dashboard)
  try:  curl -s -X POST $S_GATEWAY_URL/v1/carts/u1/items -H 'Content-Type: application/json' -d '{"sku":"A1","quantity":2}'
        curl -s $S_GATEWAY_URL/v1/carts/u1
  env:  eval "\$(scripts/dev env)"      logs: scripts/dev logs [name]      stop: scripts/dev down
EOF
}

cmd_down() {
    case ${1:-} in
    "" | --purge) ;;
    *) die "usage: scripts/dev down [--purge]" ;;
    esac
    need_root down "$@"
    stack_select dev
    stack_down "${1:-}"
}

cmd_env() {
    stack_select dev
    if [[ -r $S_DIR/env ]]; then
        cat "$S_DIR/env"
    else
        warn "the stack is not up (scripts/dev up); these are the default addresses"
        stack_env_lines
    fi
}

cmd_logs() {
    stack_select dev
    [[ -d $S_DIR/logs ]] || die "no logs: the stack was never started (scripts/dev up)"
    if [[ -n ${1:-} ]]; then
        if [[ ! -e $S_DIR/logs/$1.log ]]; then
            local names=("$S_DIR"/logs/*.log)
            names=("${names[@]##*/}")
            die "no log named $1; there are: ${names[*]%.log}"
        fi
        exec tail -n 100 -F "$S_DIR/logs/$1.log"
    fi
    exec tail -n 20 -F "$S_DIR"/logs/*.log
}

# The integration suites restart what they kill through this (CARTSHARD_DEV, CARTSHARD_STACK).
cmd_stack_up() {
    [[ $# -eq 1 && ($1 == dev || $1 == test || $1 == bench) ]] || die "usage: scripts/dev stack-up <dev|test|bench>"
    need_root stack-up "$@"
    stack_select "$1"
    stack_up
}
