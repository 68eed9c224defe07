# shellcheck shell=bash
# scripts/lib/test.sh: `scripts/dev test` and its phases: the unit tests (CTest), the OpenAPI
# lint, the migration lint, the link check, the integration suites on the test stack (with
# --repeat), the deployment suites, and the sanitizers' reports (which `soak` counts too). The fuzz
# phase is in fuzz.sh.

# Runs CTest; sets UNIT_PASSED and UNIT_FAILED.
run_unit_tests() {
    local out=$BUILD_DIR/ctest-output.txt rc=0 line total
    say "unit tests (ctest)"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" 2>&1 | tee "$out" || rc=$?
    UNIT_PASSED=0
    UNIT_FAILED=0
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$out" | tail -n 1 || true)
    if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
        UNIT_FAILED=${BASH_REMATCH[1]}
        total=${BASH_REMATCH[2]}
        UNIT_PASSED=$((total - UNIT_FAILED))
    fi
    if ((rc != 0 && UNIT_FAILED == 0)); then
        UNIT_FAILED=1 # ctest failed without running tests (e.g. a bad build directory)
    fi
}

# Lints docs/openapi.yaml offline with Spectral (rules in docs/.spectral.yaml; a warning fails
# too); counts as one unit test in UNIT_PASSED / UNIT_FAILED.
lint_openapi() {
    say "openapi lint (spectral)"
    if ensure_node_modules && "$ROOT/tests/integration/node_modules/.bin/spectral" lint "$ROOT/docs/openapi.yaml" \
        --ruleset "$ROOT/docs/.spectral.yaml" --fail-severity warn; then
        UNIT_PASSED=$((UNIT_PASSED + 1))
    else
        UNIT_FAILED=$((UNIT_FAILED + 1))
    fi
}

# Lints every file in migrations/ with Squawk (tests/migrations/lint.test.mjs: findings must be
# fixed or excused in tests/migrations/excuses.json); counts as one unit test.
lint_migrations() {
    say "migration lint (squawk)"
    if ensure_node_modules "$ROOT/tests/migrations" &&
        (cd "$ROOT/tests/migrations" && node --test --test-reporter=spec lint.test.mjs </dev/null); then
        UNIT_PASSED=$((UNIT_PASSED + 1))
    else
        UNIT_FAILED=$((UNIT_FAILED + 1))
    fi
}

# Checks that no link in the repository's Markdown leaves it or points at a missing file
# (scripts/check-links.mjs); counts as one unit test.
check_links() {
    say "markdown links (scripts/check-links.mjs)"
    if node "$ROOT/scripts/check-links.mjs" --quiet; then
        UNIT_PASSED=$((UNIT_PASSED + 1))
    else
        UNIT_FAILED=$((UNIT_FAILED + 1))
    fi
}

# Runs the integration suites against the selected (test) stack, every one or those named in the
# arguments (crash for crash.test.mjs); sets INTEG_PASSED and INTEG_FAILED.
run_integration_tests() {
    local dir=$ROOT/tests/integration tap files=() n admin_urls concurrency name
    tap=$S_DIR/integration.tap
    INTEG_PASSED=0
    INTEG_FAILED=0
    if (($# > 0)); then
        for name in "$@"; do
            [[ -f $dir/$name.test.mjs ]] && files+=("$dir/$name.test.mjs")
            [[ -f $ROOT/tests/contract/$name.test.mjs ]] && files+=("$ROOT/tests/contract/$name.test.mjs")
        done
        ((${#files[@]} > 0)) || return 0
    else
        # The outside tools (tests/contract, its own npm packages) run with the suites.
        mapfile -t files < <(find "$dir" "$ROOT/tests/contract" -maxdepth 1 -name '*.test.mjs' | sort)
    fi
    if ((${#files[@]} == 0)); then
        warn "no integration suites in tests/integration"
        return 0
    fi
    say "integration tests (node --test) against $S_GATEWAY_URL"
    admin_urls=$(printf 'http://127.0.0.1:%s,' "${S_ADMIN_PORTS[@]}")
    # One suite file at a time: the crash suite kills and restarts workers, which must not happen
    # under another suite's feet. (Node has the flag since 18.19 and 20.10; older ones lack it.)
    concurrency=()
    if node --test-concurrency=1 -e '' 2>/dev/null; then
        concurrency=(--test-concurrency=1)
    fi
    local round rounds=${REPEAT:-1} passed failed failed_rounds=()
    for ((round = 1; round <= rounds; round++)); do
        ((rounds == 1)) || say "round $round of $rounds"
        rm -f "$tap"
        (
            cd "$dir"
            set +e
            # Besides the addresses, the suites get what they need to kill and restart the stack's
            # processes: its directory (pids/<name>.pid) and `scripts/dev stack-up <stack>`.
            GATEWAY_URL=$S_GATEWAY_URL NATS_URL=$S_NATS_URL REDIS_URL=$S_REDIS_URL SHARD_DSNS=$S_SHARD_DSNS \
                CART_PARTITIONS=$S_PARTITIONS CART_STORE_ADMIN_URLS=${admin_urls%,} STACK_DIR=$S_DIR \
                CARTSHARD_DEV=$ROOT/scripts/dev CARTSHARD_STACK=$S_NAME CARTSHARD_GATEWAY_BIN=$GATEWAY_BIN \
                CARTSHARD_STORE_BIN=$STORE_BIN STATS_URL=$S_STATS_URL CARTSHARD_STATS_BIN=$STATS_BIN timeout -k 10 1500 node --test "${concurrency[@]}" \
                --test-reporter=spec --test-reporter-destination=stdout \
                --test-reporter=tap --test-reporter-destination="$tap" "${files[@]}" </dev/null
            true
        )
        passed=0
        failed=0
        if [[ -f $tap ]]; then
            n=$(grep -E '^# pass [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
            passed=${n:-0}
            n=$(grep -E '^# (fail|cancelled) [0-9]+' "$tap" | awk '{s += $3} END {print s + 0}')
            failed=${n:-0}
        fi
        if ((passed + failed == 0)); then
            failed=1 # the runner died before it reported anything
        fi
        INTEG_PASSED=$((INTEG_PASSED + passed))
        INTEG_FAILED=$((INTEG_FAILED + failed))
        ((failed == 0)) || failed_rounds+=("$round")
        if ((rounds > 1)); then
            say "round $round of $rounds: $passed passed, $failed failed (so far ${#failed_rounds[@]} of $round rounds failed)"
        fi
    done
    if ((rounds > 1)); then
        echo "repeat: $rounds rounds, $((rounds - ${#failed_rounds[@]})) passed, ${#failed_rounds[@]} failed${failed_rounds[*]:+ (rounds ${failed_rounds[*]})}"
    fi
}

# Debian packages the deployment tests need (containers, manifests); installed only when they run.
# podman runs the containers (runc; CNI networks, with dnsname for container names in DNS) and
# serves the Docker API that Debian's docker-compose (1.29) talks to; debootstrap makes the base
# image, since no registry is reachable (tests/deploy/compose.test.mjs, docs/deploy-compose.md).
DEPLOY_APT_PACKAGES=(podman runc docker-compose debootstrap golang-github-containernetworking-plugin-dnsname)
# The Kubernetes suite renders k8s/ with `kubectl kustomize`; Debian 12's kubectl (1.20, kustomize
# v2.0.3) is enough, and any newer kubectl already installed is used as it is.
command -v kubectl >/dev/null || DEPLOY_APT_PACKAGES+=(kubernetes-client)
# The monitoring suite checks and unit-tests the alert rules of k8s/monitoring with promtool, which
# Debian 12 ships in its prometheus package (2.42); the server it also brings is not started by us.
command -v promtool >/dev/null || DEPLOY_APT_PACKAGES+=(prometheus)

# Runs the deployment suites (tests/deploy/*.test.mjs: the docker-compose stack, the Kubernetes
# manifests), every one or those named in the arguments; they need no stack of ours, so they run
# after the test stack is down. Sets DEPLOY_PASSED and DEPLOY_FAILED.
run_deploy_tests() {
    local dir=$ROOT/tests/deploy tap=$ROOT/build/deploy.tap files=() name n saved
    DEPLOY_PASSED=0
    DEPLOY_FAILED=0
    if (($# > 0)); then
        for name in "$@"; do
            [[ -f $dir/$name.test.mjs ]] && files+=("$dir/$name.test.mjs")
        done
    elif [[ -d $dir ]]; then
        mapfile -t files < <(find "$dir" -maxdepth 1 -name '*.test.mjs' | sort)
    fi
    ((${#files[@]} > 0)) || return 0
    if ((${#DEPLOY_APT_PACKAGES[@]} > 0)); then
        saved=("${APT_PACKAGES[@]}")
        APT_PACKAGES=("${DEPLOY_APT_PACKAGES[@]}")
        ensure_packages
        APT_PACKAGES=("${saved[@]}")
    fi
    if [[ -f $dir/package-lock.json ]] &&
        [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        say "npm ci in tests/deploy"
        (cd "$dir" && npm ci --no-audit --no-fund)
    fi
    say "deployment tests (node --test)"
    rm -f "$tap"
    (
        cd "$dir"
        set +e
        CARTSHARD_ROOT=$ROOT timeout -k 10 1800 node --test --test-concurrency=1 \
            --test-reporter=spec --test-reporter-destination=stdout \
            --test-reporter=tap --test-reporter-destination="$tap" "${files[@]}" </dev/null
        true
    )
    if [[ -f $tap ]]; then
        n=$(grep -E '^# pass [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
        DEPLOY_PASSED=${n:-0}
        n=$(grep -E '^# (fail|cancelled) [0-9]+' "$tap" | awk '{s += $3} END {print s + 0}')
        DEPLOY_FAILED=${n:-0}
    fi
    if ((DEPLOY_PASSED + DEPLOY_FAILED == 0)); then
        DEPLOY_FAILED=1 # the runner died before it reported anything
    fi
}

# With CARTSHARD_SANITIZE: every report a sanitizer wrote (one file per process) is a failure;
# prints them and sets SANITIZER_REPORTS.
check_sanitizer_reports() {
    local f
    SANITIZER_REPORTS=0
    [[ -n $SANITIZE ]] || return 0
    for f in "$SANITIZER_LOGS"/*; do
        [[ -f $f ]] || continue
        SANITIZER_REPORTS=$((SANITIZER_REPORTS + 1))
        warn "sanitizer report $f:"
        head -n 60 "$f" >&2
        if [[ -f $SANITIZER_LOGS/stderr/${f##*.}.log ]]; then
            warn "the last lines its process logged (a suite's child, pid ${f##*.}):"
            tail -n 15 "$SANITIZER_LOGS/stderr/${f##*.}.log" >&2
        fi
    done
    say "$SANITIZE: $SANITIZER_REPORTS sanitizer report(s)"
}

test_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stack_select test
    say "stopping the test stack"
    stack_down --purge || true
    exit "$rc"
}

cmd_test() {
    need_root test "$@"
    local rc=0 stack_rc args=()
    UNIT_PASSED=0 UNIT_FAILED=0 INTEG_PASSED=0 INTEG_FAILED=0 DEPLOY_PASSED=0 DEPLOY_FAILED=0
    REPEAT=1
    while (($# > 0)); do
        case $1 in
        --repeat)
            [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--repeat takes a number of rounds (1 or more), not \"${2:-}\""
            REPEAT=$2
            shift 2
            ;;
        --repeat=*)
            [[ ${1#*=} =~ ^[1-9][0-9]*$ ]] || die "--repeat takes a number of rounds (1 or more), not \"${1#*=}\""
            REPEAT=${1#*=}
            shift
            ;;
        *)
            args+=("$1")
            shift
            ;;
        esac
    done
    set -- "${args[@]}"
    local name
    for name in "$@"; do
        [[ -f $ROOT/tests/integration/$name.test.mjs || -f $ROOT/tests/contract/$name.test.mjs ||
            -f $ROOT/tests/deploy/$name.test.mjs ]] ||
            die "no suite $name (tests/integration/, tests/contract/ or tests/deploy/$name.test.mjs)"
    done
    ensure_packages
    build
    if [[ -n $SANITIZE ]]; then
        rm -rf "$SANITIZER_LOGS"
        mkdir -p "$SANITIZER_LOGS"
    fi
    run_unit_tests
    lint_openapi
    lint_migrations
    check_links
    # The fuzz targets are sanitized builds of their own; a run of named suites skips them.
    if [[ -z $SANITIZE && $# -eq 0 ]]; then
        run_fuzz_tests
    fi

    stack_select test
    stack_down --purge >/dev/null # leftovers of an interrupted run
    trap test_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ensure_node_modules
    ensure_node_modules "$ROOT/tests/contract"
    say "starting the test stack in $S_DIR"
    set +e
    (
        set -e
        stack_up
    )
    stack_rc=$?
    set -e
    if ((stack_rc == 0)); then
        run_integration_tests "$@"
    else
        warn "the test stack did not start: the integration suites were not run"
        INTEG_FAILED=1
    fi
    trap - EXIT INT TERM
    say "stopping the test stack"
    stack_down --purge || rc=1
    if [[ -z $SANITIZE ]]; then
        run_deploy_tests "$@"
    fi
    check_sanitizer_reports

    echo
    echo "unit: $UNIT_PASSED passed, $UNIT_FAILED failed"
    echo "integration: $INTEG_PASSED passed, $INTEG_FAILED failed"
    echo "deployment: $DEPLOY_PASSED passed, $DEPLOY_FAILED failed"
    [[ -z $SANITIZE ]] || echo "sanitizer ($SANITIZE): $SANITIZER_REPORTS report(s)"
    echo "total: $((UNIT_PASSED + INTEG_PASSED + DEPLOY_PASSED)) passed, $((UNIT_FAILED + INTEG_FAILED + DEPLOY_FAILED + SANITIZER_REPORTS)) failed"
    ((UNIT_FAILED == 0 && INTEG_FAILED == 0 && DEPLOY_FAILED == 0 && SANITIZER_REPORTS == 0)) || rc=1
    exit "$rc"
}
