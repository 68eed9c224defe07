# shellcheck shell=bash
# scripts/lib/build.sh: which build scripts/dev runs (build/, or with CARTSHARD_SANITIZE
# build-asan/ or build-tsan/ and the sanitizers' settings for every process), its binaries, and
# the CMake build itself (`build`).

# CARTSHARD_SANITIZE=asan (AddressSanitizer + UndefinedBehaviorSanitizer) or tsan
# (ThreadSanitizer) builds into build-asan/ or build-tsan/ and runs everything from there; the
# sanitizers' reports go to files under <build>/sanitizer/, which `test` turns into failures
# (check_sanitizer_reports, test.sh).
SANITIZE=${CARTSHARD_SANITIZE:-}
case $SANITIZE in
'') BUILD_DIR=$ROOT/build ;;
asan | tsan)
    BUILD_DIR=$ROOT/build-$SANITIZE
    SANITIZER_LOGS=$BUILD_DIR/sanitizer
    # Every process the stack or a suite starts inherits these (the reports name the pid).
    export ASAN_OPTIONS="log_path=$SANITIZER_LOGS/asan:detect_leaks=1:halt_on_error=1:abort_on_error=0"
    export UBSAN_OPTIONS="log_path=$SANITIZER_LOGS/ubsan:print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizer/lsan.supp:print_suppressions=0"
    export TSAN_OPTIONS="log_path=$SANITIZER_LOGS/tsan:halt_on_error=0:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitizer/tsan.supp"
    # The suites keep the stderr of every process they start there, as <pid>.log, so that a
    # report (named by pid) comes with what its process logged.
    export CARTSHARD_STDERR_DIR=$SANITIZER_LOGS/stderr
    ;;
*)
    echo "dev: CARTSHARD_SANITIZE must be asan or tsan, not \"$SANITIZE\"" >&2
    exit 2
    ;;
esac
# The services' binaries; stack.sh starts them, test.sh and bench.sh pass them to the suites.
# shellcheck disable=SC2034
GATEWAY_BIN=$BUILD_DIR/services/gateway/cart-gateway
# shellcheck disable=SC2034
STORE_BIN=$BUILD_DIR/services/cart-store/cart-store
# shellcheck disable=SC2034
STATS_BIN=$BUILD_DIR/services/cart-stats/cart-stats

build() {
    local args=(-S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release)
    if [[ -n ${CI:-} ]]; then
        args+=(-DCARTSHARD_WERROR=ON)
    fi
    case $SANITIZE in
    asan) args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARTSHARD_ASAN=ON) ;;
    tsan) args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCARTSHARD_TSAN=ON) ;;
    esac
    say "building in ${BUILD_DIR#"$ROOT"/}/"
    cmake --log-level=WARNING "${args[@]}" || die "cmake could not configure the build (see above)"
    cmake --build "$BUILD_DIR" -j"$(nproc)" || die "the build failed (see the compiler's messages above)"
}
