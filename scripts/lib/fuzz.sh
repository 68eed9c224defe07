# shellcheck shell=bash
# scripts/lib/fuzz.sh: `scripts/dev fuzz` and the fuzz phase of `scripts/dev test`
# (run_fuzz_tests): the libFuzzer targets of tests/fuzz, built with clang in build-fuzz/.

FUZZ_BUILD_DIR=$ROOT/build-fuzz
# Debian packages only the fuzz targets need (clang's libFuzzer and sanitizer runtimes).
FUZZ_APT_PACKAGES=(clang libclang-rt-14-dev)
FUZZ_SECONDS=60      # per target, for `scripts/dev fuzz`
FUZZ_TEST_SECONDS=10 # per target, in `scripts/dev test`
FUZZ_MAX_LEN=4096    # bytes; a request body, an event or a cache entry of interest is smaller

# The targets, one per tests/fuzz/fuzz_*.c.
fuzz_targets() {
    local f
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        [[ -f $f ]] && basename "$f" .c
    done
}

fuzz_packages_ok() {
    local p
    for p in "${FUZZ_APT_PACKAGES[@]}"; do
        pkg_installed "$p" || return 1
    done
}

# Installs clang if needed and builds every fuzz target in build-fuzz/ (libraries included, all
# compiled with -fsanitize=fuzzer-no-link,address,undefined).
fuzz_build() {
    local saved args=(-S "$ROOT" -B "$FUZZ_BUILD_DIR" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo
        -DCARTSHARD_FUZZ=ON -DCARTSHARD_TESTS=OFF)
    if ! fuzz_packages_ok; then
        saved=("${APT_PACKAGES[@]}")
        APT_PACKAGES=("${FUZZ_APT_PACKAGES[@]}")
        ensure_packages
        APT_PACKAGES=("${saved[@]}")
    fi
    [[ -n ${CI:-} ]] && args+=(-DCARTSHARD_WERROR=ON)
    say "building the fuzz targets in build-fuzz/"
    cmake --log-level=WARNING "${args[@]}" && cmake --build "$FUZZ_BUILD_DIR" --target fuzz_all -j"$(nproc)"
}

# Runs one target for $2 seconds on a copy of its corpus in build-fuzz/runs/<target>/ (so the
# repo's corpus stays as it is), with its dictionary if there is one. Prints the executions per
# second and the new inputs it found; on a crash, leak or timeout prints the input's path and
# returns 1.
fuzz_run() {
    local target=$1 seconds=$2 run=$FUZZ_BUILD_DIR/runs/$1 rc=0 args f
    local bin=$FUZZ_BUILD_DIR/tests/fuzz/$target dict=$ROOT/tests/fuzz/$target.dict
    rm -rf "$run"
    mkdir -p "$run/corpus" "$run/crashes"
    if [[ -d $ROOT/tests/fuzz/corpus/$target ]]; then
        cp "$ROOT/tests/fuzz/corpus/$target"/* "$run/corpus/" 2>/dev/null || true
    fi
    args=(-max_total_time="$seconds" -max_len="$FUZZ_MAX_LEN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$run/crashes/")
    [[ -f $dict ]] && args+=(-dict="$dict")
    "$bin" "${args[@]}" "$run/corpus" >"$run/log" 2>&1 </dev/null || rc=$?
    if ((rc != 0)); then
        warn "$target FAILED (exit $rc); the end of its log ($run/log):"
        grep -v -E '^(#[0-9]+|INFO:|MERGE|MS:|0x|Base64:|stat::|\s*$)' "$run/log" | tail -n 25 >&2 || true
        for f in "$run/crashes"/*; do
            [[ -f $f ]] && warn "$target: the input is $f (rerun: $bin $f)"
        done
        return 1
    fi
    say "$target: ${seconds}s, $(fuzz_stat "$run/log" average_exec_per_sec) exec/s," \
        "$(fuzz_stat "$run/log" number_of_executed_units) runs," \
        "$(fuzz_stat "$run/log" new_units_added) new inputs (in $run/corpus)"
}

# The value of libFuzzer's final statistic $2 (-print_final_stats) in log $1.
fuzz_stat() {
    sed -n "s/^stat::$2: *//p" "$1" | tail -n 1
}

# For `test`: a short run of every target, each one unit test in UNIT_PASSED / UNIT_FAILED.
run_fuzz_tests() {
    local target
    say "fuzz targets, ${FUZZ_TEST_SECONDS}s each (libFuzzer)"
    if ! fuzz_build; then
        warn "the fuzz targets did not build"
        UNIT_FAILED=$((UNIT_FAILED + $(fuzz_targets | wc -l)))
        return 0
    fi
    for target in $(fuzz_targets); do
        if fuzz_run "$target" "$FUZZ_TEST_SECONDS"; then
            UNIT_PASSED=$((UNIT_PASSED + 1))
        else
            UNIT_FAILED=$((UNIT_FAILED + 1))
        fi
    done
}

cmd_fuzz() {
    local seconds=$FUZZ_SECONDS targets=() all failed=() target
    mapfile -t all < <(fuzz_targets)
    while (($# > 0)); do
        case $1 in
        --seconds)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/dev fuzz [target...] [--seconds N]"
            seconds=$2
            shift 2
            ;;
        *)
            target=fuzz_${1#fuzz_}
            [[ " ${all[*]} " == *" $target "* ]] || die "no fuzz target $1 (there are: ${all[*]})"
            targets+=("$target")
            shift
            ;;
        esac
    done
    ((${#targets[@]} > 0)) || targets=("${all[@]}")
    fuzz_packages_ok || need_root fuzz "${targets[@]}" --seconds "$seconds"
    fuzz_build || die "the fuzz targets did not build (see above)"
    for target in "${targets[@]}"; do
        fuzz_run "$target" "$seconds" || failed+=("$target")
    done
    if ((${#failed[@]} > 0)); then
        die "crashed: ${failed[*]}"
    fi
    say "no crashes in ${targets[*]}"
}
