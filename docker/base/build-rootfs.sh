#!/usr/bin/env bash
# build-rootfs.sh - recipe of Sluice's Debian base image (sluice/debian-base).
# Called by scripts/docker-images.sh (no registry is reachable, so the base is
# bootstrapped from the Debian mirror instead of pulled from Docker Hub).
#
# Usage: docker/base/build-rootfs.sh OUT_TARBALL SUITE MIRROR [SECURITY_MIRROR]
#   MIRROR (and SECURITY_MIRROR) as in this machine's apt sources; scripts/docker-images.sh
#   takes them from there (or from DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR).
# Needs root and debootstrap. Writes a gzip'ed rootfs tarball for `docker import`.
set -euo pipefail

out=${1:?usage: $0 OUT_TARBALL SUITE MIRROR [SECURITY_MIRROR]}
suite=${2:?suite}
mirror=${3:?mirror}
security_mirror=${4:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-rootfs.XXXXXX")
rootfs="$work/rootfs"
cleanup() {
    # debootstrap mounts proc/sys inside the target; make sure nothing stays mounted
    # before deleting it.
    local m
    for m in proc sys dev/pts; do
        mountpoint -q "$rootfs/$m" 2>/dev/null && umount -l "$rootfs/$m" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "[base] debootstrap --variant=minbase $suite from $mirror" >&2
if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    echo "[base] ERROR: debootstrap failed" >&2
    exit 1
fi

# APT sources: the same mirror(s) this machine uses, plus updates/security.
{
    echo "deb $mirror $suite main"
    echo "deb $mirror $suite-updates main"
    [ -n "$security_mirror" ] && echo "deb $security_mirror $suite-security main"
} >"$rootfs/etc/apt/sources.list"

# Container conventions (as in Debian's official Docker images):
# no service starts during package installs, ...
cat >"$rootfs/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
# Do not start services from package postinst scripts inside containers.
exit 101
EOF
chmod 755 "$rootfs/usr/sbin/policy-rc.d"
# ... no recommends, no downloaded .debs kept in layers, no docs/man pages.
cat >"$rootfs/etc/apt/apt.conf.d/90sluice" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
EOF
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90sluice-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
# Some postinst scripts (openjdk's update-alternatives) need the man1 dir to exist.
mkdir -p "$rootfs/usr/share/man/man1"

# Trim: package caches, lists (images run apt-get update themselves), logs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/debootstrap
: >"$rootfs/etc/resolv.conf"     # docker provides its own
echo sluice >"$rootfs/etc/hostname"

echo "[base] writing $out" >&2
mkdir -p "$(dirname "$out")"
tar --numeric-owner --one-file-system -C "$rootfs" -czf "$out.partial" .
mv "$out.partial" "$out"
