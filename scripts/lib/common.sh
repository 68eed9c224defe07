# shellcheck shell=bash
# scripts/lib/common.sh: what every file of scripts/lib uses: the messages (say, warn, die) and
# need_root. Like every file here it is sourced by scripts/dev, never run on its own.

say() { printf 'dev: %s\n' "$*"; }
warn() { printf 'dev: %s\n' "$*" >&2; }
die() {
    warn "error: $*"
    exit 1
}

# Commands that install packages or start servers need root; re-run through sudo when possible.
need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "run as root (or install sudo)"
        exec sudo -E "$0" "$@"
    fi
}
