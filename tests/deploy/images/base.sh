#!/usr/bin/env bash
# tests/deploy/images/base.sh IMAGE WORKDIR: makes the base image IMAGE (debian:bookworm-slim
# for the Dockerfiles' FROM) with debootstrap, for machines that cannot pull it from a registry.
#
# debootstrap --variant=minbase gives bookworm with its essential packages only, from the Debian
# mirror this machine's apt already uses; the root file system is then trimmed the way the
# official slim image is (apt lists and downloaded packages removed, and dpkg told to leave out
# documentation, manual pages and translations from now on) and imported with `podman import`.
# WORKDIR receives the root file system (removed afterwards). Needs root.
set -euo pipefail

image=${1:?usage: base.sh IMAGE WORKDIR}
work=${2:?usage: base.sh IMAGE WORKDIR}
rootfs=$work/rootfs

# The first deb.debian.org-like URI for the suite bookworm in apt's own sources (deb822 or
# one-line format); the public mirror when none is found.
mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        uri=$(awk '
            /^[[:space:]]*$/ { if (uri != "" && suite) { print uri; exit } uri = ""; suite = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
            END { if (uri != "" && suite) print uri }' "$f" | head -n 1)
        if [[ -n $uri ]]; then
            echo "$uri"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' "$f")
        if [[ -n $uri ]]; then
            echo "$uri"
            return
        fi
    done
    echo http://deb.debian.org/debian
}

rm -rf "$rootfs"
mkdir -p "$work"
url=$(mirror)
echo "base.sh: debootstrap --variant=minbase bookworm from $url"
debootstrap --variant=minbase bookworm "$rootfs" "$url" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "base.sh: debootstrap failed (log: $work/debootstrap.log)" >&2
    exit 1
}

# What the slim image leaves out, for every package installed on top of it as well.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/cartshard-slim" <<'CFG'
# cartshard's debootstrapped bookworm-slim stand-in: no documentation, manuals or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$rootfs/etc/apt/apt.conf.d/cartshard-slim" <<'CFG'
// cartshard's debootstrapped bookworm-slim stand-in: keep no downloaded packages.
Binary::apt::APT::Keep-Downloaded-Packages "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/man" "$rootfs/usr/share/info" -mindepth 1 -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
# debootstrap copies the host's; the containers get theirs from the engine.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

tar --numeric-owner -C "$rootfs" -c . | podman import \
    --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm (cartshard tests)" - "$image"
rm -rf "$rootfs"
echo "base.sh: imported $image"
