# shellcheck shell=bash
# scripts/lib/soak.sh: `scripts/dev soak`: a long mixed load (tests/soak/soak.mjs) on a stack of
# its own, with every process's memory and descriptors.

SOAK_MINUTES=10

soak_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stack_select soak
    say "stopping the soak stack"
    stack_down --purge || true
    exit "$rc"
}

# Writes "name pid kind" for every process of the selected stack (kind "tree" for a PostgreSQL
# postmaster, measured with its backends) to file $1.
soak_processes() {
    local out=$1 name comm pid i
    : >"$out"
    for name in gateway cs-1 cs-2 nats redis; do
        case $name in
        gateway) comm=cart-gateway ;;
        cs-*) comm=cart-store ;;
        nats) comm=nats-server ;;
        redis) comm=redis-server ;;
        esac
        pid=$(running_pid "$name" "$comm") || die "$name is not running"
        echo "$name $pid process" >>"$out"
    done
    for i in "${!S_PG_PORTS[@]}"; do
        # The postmaster's working directory is its data directory, which may be outside the
        # stack's (the fallback root): its pid file and name are checked instead.
        read -r pid <"$(pidfile "pg$i")" || die "pg$i has no pid file"
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]] || die "pg$i (pid $pid) is not running"
        echo "pg$i $pid tree" >>"$out"
    done
}

cmd_soak() {
    local minutes=$SOAK_MINUTES rc=0 procs
    while (($# > 0)); do
        case $1 in
        --minutes)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/dev soak [--minutes N]"
            minutes=$2
            shift 2
            ;;
        *) die "usage: scripts/dev soak [--minutes N]" ;;
        esac
    done
    need_root soak --minutes "$minutes"
    ensure_packages
    build
    if [[ -n $SANITIZE ]]; then
        rm -rf "$SANITIZER_LOGS"
        mkdir -p "$SANITIZER_LOGS"
    fi
    stack_select soak
    stack_down --purge >/dev/null # leftovers of an interrupted run
    trap soak_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    say "starting the soak stack in $S_DIR"
    stack_up
    procs=$S_DIR/processes
    soak_processes "$procs"
    mkdir -p "$ROOT/build/soak"
    GATEWAY_URL=$S_GATEWAY_URL SOAK_MINUTES=$minutes SOAK_PROCESSES=$procs SOAK_OUT=$ROOT/build/soak \
        node "$ROOT/tests/soak/soak.mjs" </dev/null || rc=$?
    trap - EXIT INT TERM
    say "stopping the soak stack"
    stack_down --purge || rc=1
    check_sanitizer_reports
    ((SANITIZER_REPORTS == 0)) || rc=1
    exit "$rc"
}
