# shellcheck shell=bash
# scripts/lib/packages.sh: what scripts/dev installs: the Debian packages (ensure_packages
# installs whatever of APT_PACKAGES is missing; other files swap in their own lists), nats-server
# 2.10 pinned from Debian 13, Node >= 18, and the integration suites' npm packages.

APT_PACKAGES=(build-essential cmake pkg-config libh2o-dev libuv1-dev libhiredis-dev libnats-dev libpq-dev
    libjansson-dev check libssl-dev postgresql redis-server nats-server curl openssl wrk
    chromium)

node_ok() {
    command -v node >/dev/null &&
        node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null
}

pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# nats-server comes from Debian 13 (trixie): 2.10 brings sync_interval and two years of JetStream
# clustering fixes over bookworm's 2.9.10, among them the clustered dedupe accounting (clfs) that
# could make a replica skip messages after a leader change (docs/internals/failover.md). Debian's
# own archive, pinned so that nothing else comes from trixie: priority -1 for every package there
# but nats-server. The .deb needs only libc6 >= 2.34 (bookworm has 2.36).
NATS_SERVER_MIN=2.10
NATS_APT_SOURCE=/etc/apt/sources.list.d/cartshard-trixie.sources
NATS_APT_PIN=/etc/apt/preferences.d/cartshard-trixie

nats_server_current() {
    local v
    v=$(dpkg-query -W -f='${Version}' nats-server 2>/dev/null) || return 1
    dpkg --compare-versions "$v" ge "$NATS_SERVER_MIN"
}

# Writes the trixie source (with bookworm's mirror and keyring) and its pin; true if either changed.
nats_apt_source() {
    local uri changed=1 source pin
    uri=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | sed 's/^URIs: *//')
    [[ -n $uri ]] || uri=$(grep -hoE '^deb +[^ ]+/debian/? +bookworm ' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')
    [[ -n $uri ]] || die "no Debian mirror found in /etc/apt to take nats-server $NATS_SERVER_MIN from trixie"
    source=$(printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri")
    pin=$(printf 'Package: *\nPin: release n=trixie\nPin-Priority: -1\n\nPackage: nats-server\nPin: release n=trixie\nPin-Priority: 990\n')
    if [[ $(cat "$NATS_APT_SOURCE" 2>/dev/null) != "$source" ]]; then
        printf '%s\n' "$source" >"$NATS_APT_SOURCE"
        changed=0
    fi
    if [[ $(cat "$NATS_APT_PIN" 2>/dev/null) != "$pin" ]]; then
        printf '%s\n' "$pin" >"$NATS_APT_PIN"
        changed=0
    fi
    return $changed
}

ensure_packages() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        if [[ $p == nats-server ]]; then
            nats_server_current || missing+=("$p")
            continue
        fi
        pkg_installed "$p" || missing+=("$p")
    done
    # A Node >= 18 from elsewhere (e.g. NodeSource, which bundles npm) is kept.
    if ! node_ok; then
        missing+=(nodejs npm)
    elif ! command -v npm >/dev/null; then
        missing+=(npm)
    fi
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ " ${missing[*]} " == *" nats-server "* ]]; then
        nats_apt_source || true
    fi
    apt-get -q -o Acquire::Retries=3 update
    apt-get -q -y -o Acquire::Retries=3 install --no-install-recommends "${missing[@]}"
    node_ok || die "node >= 18 is still missing after installing nodejs"
    if [[ " ${missing[*]} " == *" nats-server "* ]]; then
        nats_server_current || die "nats-server $NATS_SERVER_MIN or later did not install (see apt's messages above)"
    fi
}

# Installs a folder's npm packages (default tests/integration; tests/contract has its own) when
# node_modules is missing or older than the lock.
ensure_node_modules() {
    local dir=${1:-$ROOT/tests/integration}
    if [[ ! -f $dir/node_modules/.package-lock.json || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        say "npm ci in ${dir#"$ROOT"/}"
        (cd "$dir" && npm ci --no-audit --no-fund)
    fi
}
