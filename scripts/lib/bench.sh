# shellcheck shell=bash
# scripts/lib/bench.sh: `scripts/dev bench`, the benchmark (tests/bench/bench.mjs,
# docs/performance.md) on a stack of its own.

# Debian packages only the benchmark needs (the static-file baseline's server and the chart);
# installed only when it runs. wrk and redis-benchmark come with APT_PACKAGES.
BENCH_APT_PACKAGES=(h2o gnuplot-nox)

# Debian's h2o package enables and starts a system-wide h2o on port 80 (every address); the bench
# needs only the binary, so when it installed the package itself it turns that service off again.
bench_h2o_service_off() {
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now h2o.service >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/h2o ]]; then
        invoke-rc.d h2o stop >/dev/null 2>&1 || true
        update-rc.d h2o disable >/dev/null 2>&1 || true
    fi
}

bench_usage() {
    die "usage: scripts/dev bench [--quick] [--only name,...] [--keep] | scripts/dev bench --stop"
}

cmd_bench() {
    need_root bench "$@"
    local quick=0 only="" keep=0 rc=0 had_h2o=1 saved started_ms
    started_ms=$(date +%s%3N) # the whole command's time goes into the results
    while (($# > 0)); do
        case $1 in
        --quick) quick=1 ;;
        --only)
            [[ -n ${2:-} ]] || bench_usage
            only=$2
            shift
            ;;
        --only=*) only=${1#--only=} ;;
        --keep) keep=1 ;;
        --stop)
            stack_select bench
            stack_down --purge
            return 0
            ;;
        *) bench_usage ;;
        esac
        shift
    done
    [[ -z $SANITIZE ]] || die "the benchmark measures the Release build: unset CARTSHARD_SANITIZE"
    ensure_packages
    pkg_installed h2o || had_h2o=0
    saved=("${APT_PACKAGES[@]}")
    APT_PACKAGES=("${BENCH_APT_PACKAGES[@]}")
    ensure_packages
    APT_PACKAGES=("${saved[@]}")
    ((had_h2o == 1)) || bench_h2o_service_off
    build
    ensure_node_modules
    stack_select bench
    # A stack kept running by `bench --keep` is used as it is; anything else left in .stack-bench/
    # is deleted, so that every run starts from empty shards and streams.
    if ! running_pid gateway cart-gateway >/dev/null; then
        stack_down --purge >/dev/null
    fi
    if ((keep == 0)); then
        trap 'trap - EXIT; stack_down --purge >/dev/null 2>&1 || true' EXIT
    fi
    trap 'exit 130' INT
    trap 'exit 143' TERM
    say "starting the bench stack in $S_DIR"
    stack_up
    local admin_urls
    admin_urls=$(printf 'http://127.0.0.1:%s,' "${S_ADMIN_PORTS[@]}")
    # The ratios come last: the stack is stopped quietly after them (on exit, unless --keep).
    (
        cd "$ROOT/tests/bench"
        GATEWAY_URL=$S_GATEWAY_URL NATS_URL=$S_NATS_URL REDIS_URL=$S_REDIS_URL SHARD_DSNS=$S_SHARD_DSNS \
            CART_PARTITIONS=$S_PARTITIONS CART_STORE_ADMIN_URLS=${admin_urls%,} STACK_DIR=$S_DIR \
            CARTSHARD_STORE_BIN=$STORE_BIN STATS_URL=$S_STATS_URL BENCH_JS_PUBLISH_BIN=$BUILD_DIR/tests/bench/js_publish \
            PG_BIN=$PG_BIN BENCH_OUT=$ROOT/build/bench BENCH_QUICK=$quick \
            BENCH_ONLY=$only BENCH_COMMIT="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
            BENCH_STARTED_MS=$started_ms node bench.mjs </dev/null
    ) || rc=$?
    if ((keep == 1)); then
        say "the bench stack keeps running ($S_GATEWAY_URL); stop it with: scripts/dev bench --stop"
    fi
    if ((rc != 0)); then
        die "the benchmark failed (exit $rc); what it measured so far is in build/bench/"
    fi
}
