# shellcheck shell=bash
# Shared helpers for Sluice's dev scripts. Source it; do not execute it.
#
#   SLUICE_CACHE_DIR   where downloads/builds are cached
#                      (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sluice)

SLUICE_CACHE_DIR="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}"

# Messages go to stderr so that stdout stays usable for data (tags, paths, ...).
log()  { printf '[%s] %s\n' "${SLUICE_LOG_TAG:-sluice}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${SLUICE_LOG_TAG:-sluice}" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "${SLUICE_LOG_TAG:-sluice}" "$*" >&2; exit 1; }

# now_s: seconds since the epoch (for timings / deadlines).
now_s() { date +%s; }

# ensure_apt_packages PKG...: installs the Debian packages that are missing.
# Runs `apt-get update` at most once per process, and only when needed.
_SLUICE_APT_UPDATED=0
ensure_apt_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "need packages ${missing[*]} but apt-get is not available"
    [ "$(id -u)" -eq 0 ] || die "need packages ${missing[*]}: run as root or install them first"
    local aptlog="$SLUICE_CACHE_DIR/apt.log"
    # Wait for (instead of failing on) another apt/dpkg run holding the lock.
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    mkdir -p "$SLUICE_CACHE_DIR"
    log "installing Debian packages: ${missing[*]} (log: $aptlog)"
    if [ "$_SLUICE_APT_UPDATED" -eq 0 ]; then
        if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$aptlog" 2>&1; then
            tail -n 20 "$aptlog" >&2
            die "apt-get update failed (log: $aptlog)"
        fi
        _SLUICE_APT_UPDATED=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1; then
        tail -n 20 "$aptlog" >&2
        die "apt-get install ${missing[*]} failed (log: $aptlog)"
    fi
}

# ensure_java: a Java runtime (17+) on PATH.
ensure_java() {
    command -v java >/dev/null 2>&1 || ensure_apt_packages openjdk-17-jre-headless
}

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# take_lock FILE: exclusive lock held until the script exits (serialises
# concurrent runs of the same script). The fd is in $SLUICE_LOCK_FD; close it
# for long-lived children ({SLUICE_LOCK_FD}>&-) or they keep the lock.
SLUICE_LOCK_FD=
take_lock() {
    mkdir -p "$(dirname "$1")"
    exec {SLUICE_LOCK_FD}>"$1"
    if ! flock -n "$SLUICE_LOCK_FD"; then
        log "waiting for another run to finish (lock $1)"
        flock "$SLUICE_LOCK_FD"
    fi
}
