#!/usr/bin/env bash
# docker-images.sh - makes sure a Docker engine runs and that Sluice's test
# images exist, building only the ones that are missing. No registry is
# reachable here, so nothing is pulled: the base image is bootstrapped from the
# Debian mirror this machine uses (debootstrap) and the others are built on it.
#
#   sluice/debian-base:bookworm-rN   debootstrap --variant=minbase bookworm, `docker import`ed
#   sluice/kafka:<kafka version>-rN   single-node KRaft Kafka (docker/kafka/)
#   sluice/mariadb:10.11-rN          MariaDB server (docker/mariadb/)
#   sluice/sluice:<version>          the `sluice` binary and the example jobs (docker/sluice/);
#                                    only built by the `sluice` command below
#
# Usage:
#   scripts/docker-images.sh [build]   start dockerd if needed, build missing images,
#                                      print SLUICE_*_IMAGE=tag lines on stdout
#   scripts/docker-images.sh tags      only print the SLUICE_*_IMAGE=tag lines
#   scripts/docker-images.sh smoke     build, then run each image (host network and
#                                      -p port mapping) and check it answers, then
#                                      remove the containers
#   scripts/docker-images.sh engine    only make sure dockerd is running
#   scripts/docker-images.sh sluice    build sluice/sluice:<workspace version> from a release
#                                      build (cargo build --release --workspace --bins, run
#                                      here unless SLUICE_BIN_DIR is set); prints
#                                      SLUICE_IMAGE=tag. Rebuilt whenever the binaries or
#                                      docker/sluice/* change (their hash is its label)
#
# Environment:
#   SLUICE_REBUILD=1     rebuild all images (and the base rootfs tarball) even if present
#   DEBIAN_MIRROR        Debian mirror for debootstrap (default: the one this machine's apt
#                        uses for bookworm, from /etc/apt/sources.list, sources.list.d/*.list
#                        and *.sources; none there and none set: the base image build fails)
#   DEBIAN_SECURITY_MIRROR  security mirror written into the image's apt sources (default:
#                        the one apt uses for bookworm-security; none: no security source)
#   KAFKA_VERSION        Kafka version (default 4.4.0, see scripts/lib/kafka-install.sh)
#   KAFKA_MATRIX_VERSIONS  further Kafka versions to build images of (default 3.9.2;
#                        printed as SLUICE_KAFKA_IMAGE_<major>_<minor>=tag)
#   SLUICE_BIN_DIR       `sluice` command: the directory holding the built `sluice` and example
#                        binaries (e.g. $CARGO_TARGET_DIR/debug); they are copied without
#                        debug info
#   SLUICE_IMAGE         `sluice` command: the tag to build (default sluice/sluice:<version>)
#   SLUICE_CACHE_DIR     cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/sluice); holds the
#                        rootfs tarball, build contexts, build logs and dockerd.log
#
# Changing a recipe (docker/**, scripts/lib/kafka-install.sh): bump the matching
# *_RECIPE below, otherwise the old image is reused (a warning is printed when the
# recipe files no longer match the image's dev.sluice.recipe label).
#
# Running the images (what the smoke test does):
#   docker run --rm -d --network host sluice/kafka:4.4.0-r1          # 127.0.0.1:9092
#   docker run --rm -d -p 127.0.0.1:19092:9092 -e KAFKA_ADVERTISED_PORT=19092 sluice/kafka:4.4.0-r1
#   docker run --rm -d --network host sluice/mariadb:10.11-r1        # 127.0.0.1:3306, sluice/sluice@sluice
#   env: KAFKA_PORT, KAFKA_ADVERTISED_HOST/PORT, KAFKA_NUM_PARTITIONS; MYSQL_PORT,
#        MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD
#   readiness: Kafka logs "Kafka Server started", MariaDB logs "ready for connections".
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
export SLUICE_LOG_TAG=docker-images
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"
# shellcheck source=lib/kafka-install.sh
. "$SCRIPT_DIR/lib/kafka-install.sh"

# Recipe versions: bump when the corresponding recipe changes.
BASE_RECIPE=r1
KAFKA_RECIPE=r1
MARIADB_RECIPE=r1

DEBIAN_SUITE=bookworm
BASE_IMAGE="sluice/debian-base:$DEBIAN_SUITE-$BASE_RECIPE"
KAFKA_IMAGE="sluice/kafka:$KAFKA_VERSION-$KAFKA_RECIPE"
# Further Kafka versions of the test matrix (scripts/test-kafka-matrix.sh),
# each built as sluice/kafka:<version>-rN and printed as
# SLUICE_KAFKA_IMAGE_<major>_<minor>=tag.
KAFKA_MATRIX_VERSIONS="${KAFKA_MATRIX_VERSIONS-3.9.2}"
MARIADB_IMAGE="sluice/mariadb:10.11-$MARIADB_RECIPE"

IMAGES_DIR="$SLUICE_CACHE_DIR/images"
BASE_TARBALL="$IMAGES_DIR/debian-base-$DEBIAN_SUITE-$BASE_RECIPE.tar.gz"
DOCKERD_LOG="$SLUICE_CACHE_DIR/dockerd.log"
REBUILD="${SLUICE_REBUILD:-0}"
# The classic builder: BuildKit would need the buildx plugin, which Debian's
# docker.io does not ship; the classic builder supports `--network host` too.
export DOCKER_BUILDKIT=0

SUMMARY=()
summary() { SUMMARY+=("$(printf '%-34s %s' "$1" "$2")"); }

print_tags() {
    echo "SLUICE_BASE_IMAGE=$BASE_IMAGE"
    echo "SLUICE_KAFKA_IMAGE=$KAFKA_IMAGE"
    local v major_minor
    for v in $KAFKA_MATRIX_VERSIONS; do
        major_minor=$(printf '%s' "$v" | cut -d. -f1-2 | tr . _)
        echo "SLUICE_KAFKA_IMAGE_$major_minor=sluice/kafka:$v-$KAFKA_RECIPE"
    done
    echo "SLUICE_MARIADB_IMAGE=$MARIADB_IMAGE"
}

# ---------------------------------------------------------------- engine ----

docker_ok() { docker info >/dev/null 2>&1; }

ensure_docker() {
    if docker_ok; then
        log "Docker engine: running"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        ensure_apt_packages docker.io
    fi
    [ "$(id -u)" -eq 0 ] || die "dockerd is not running and only root can start it"
    local t0 pid=""
    t0=$(now_s)
    # Started already (e.g. by another script a moment ago) but not answering yet?
    if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        pid=$(cat /var/run/docker.pid)
        log "dockerd (pid $pid) is starting, waiting for it"
    else
        mkdir -p "$(dirname "$DOCKERD_LOG")"
        log "starting dockerd in the background (log: $DOCKERD_LOG)"
        nohup setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null {SLUICE_LOCK_FD}>&- &
        pid=$!
    fi
    while ! docker_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited (see $DOCKERD_LOG)"
        fi
        [ $(( $(now_s) - t0 )) -lt 60 ] || die "dockerd did not answer within 60s (see $DOCKERD_LOG)"
        sleep 0.5
    done
    log "Docker engine: started in $(( $(now_s) - t0 ))s"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# recipe_hash FILE...: short hash of the recipe files (stored as an image label).
recipe_hash() { cat "$@" | sha256sum | cut -c1-16; }

# reuse_image TAG HASH: true if TAG exists and may be reused; warns when the
# recipe changed since it was built (the tag's -rN suffix was not bumped).
reuse_image() {
    local tag=$1 hash=$2 label
    [ "$REBUILD" = 1 ] && return 1
    image_exists "$tag" || return 1
    label=$(docker image inspect -f '{{ index .Config.Labels "dev.sluice.recipe" }}' "$tag" 2>/dev/null || true)
    if [ -n "$label" ] && [ "$label" != "$hash" ]; then
        warn "$tag was built from a different recipe ($label, now $hash): bump its *_RECIPE in $0, or run with SLUICE_REBUILD=1"
    fi
    return 0
}

# ------------------------------------------------------------ base image ----

# apt_sources_uri SUITE: first URI that apt's configuration uses for SUITE
# (one-line *.list files and deb822 *.sources files).
apt_sources_uri() {
    local suite=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " s " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }' "$f"
    done
}

# debian_mirror: the Debian mirror debootstrap fetches $DEBIAN_SUITE from:
# $DEBIAN_MIRROR, else the one this machine's apt uses for that suite. No
# mirror is built in: without either, it fails and says what to set.
debian_mirror() {
    local m=${DEBIAN_MIRROR:-}
    [ -n "$m" ] || m=$(apt_sources_uri "$DEBIAN_SUITE" | head -n1)
    [ -n "$m" ] || die "no Debian mirror for $DEBIAN_SUITE: this machine's apt sources" \
        "(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources) name none;" \
        "set DEBIAN_MIRROR to a Debian mirror's URL (the one your apt would use) and retry"
    echo "$m"
}

# The base image's recipe hash leaves out comment lines: a comment edit does
# not ask for a new base image.
base_recipe_hash() { sed '/^[[:space:]]*#/d' "$REPO_DIR/docker/base/build-rootfs.sh" | recipe_hash; }

BASE_DONE=0
ensure_base_image() {
    local hash t0 mirror security
    [ "$BASE_DONE" = 1 ] && return 0
    BASE_DONE=1
    hash=$(base_recipe_hash)
    if reuse_image "$BASE_IMAGE" "$hash"; then
        summary "$BASE_IMAGE" "reused"
        return 0
    fi
    t0=$(now_s)
    if [ "$REBUILD" = 1 ] || [ ! -f "$BASE_TARBALL" ]; then
        ensure_apt_packages debootstrap
        mirror=$(debian_mirror)
        security=${DEBIAN_SECURITY_MIRROR:-$(apt_sources_uri "$DEBIAN_SUITE-security" | head -n1)}
        log "building base rootfs: debootstrap $DEBIAN_SUITE from $mirror (security: ${security:-none}) (about a minute)"
        "$REPO_DIR/docker/base/build-rootfs.sh" "$BASE_TARBALL" "$DEBIAN_SUITE" "$mirror" "$security"
    else
        log "base rootfs tarball cached: $BASE_TARBALL"
    fi
    log "importing $BASE_IMAGE"
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL dev.sluice.recipe=$hash" \
        "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
    summary "$BASE_IMAGE" "built in $(( $(now_s) - t0 ))s"
}

# ---------------------------------------------------------- other images ----

# docker_build NAME TAG CONTEXT HASH [EXTRA docker build ARGS...]
docker_build() {
    local name=$1 tag=$2 ctx=$3 hash=$4 t0 buildlog
    shift 4
    if [ -n "${http_proxy:-}" ]; then
        set -- "$@" --build-arg "http_proxy=$http_proxy"
    fi
    t0=$(now_s)
    buildlog="$IMAGES_DIR/build-$name.log"
    log "building $tag (log: $buildlog)"
    # --network host: RUN apt-get needs the host's network (no bridge NAT needed).
    if ! docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            --label "dev.sluice.recipe=$hash" -t "$tag" "$@" "$ctx" >"$buildlog" 2>&1; then
        tail -n 40 "$buildlog" >&2
        die "docker build of $tag failed (full log: $buildlog)"
    fi
    summary "$tag" "built in $(( $(now_s) - t0 ))s"
}

ensure_kafka_image() {
    local hash ctx
    hash=$(recipe_hash "$REPO_DIR"/docker/kafka/* "$SCRIPT_DIR/lib/common.sh" "$SCRIPT_DIR/lib/kafka-install.sh")
    hash=$(printf '%s %s' "$hash" "$KAFKA_VERSION" | sha256sum | cut -c1-16)
    if reuse_image "$KAFKA_IMAGE" "$hash"; then
        summary "$KAFKA_IMAGE" "reused"
        return 0
    fi
    kafka_install
    ensure_base_image
    # Build context: recipe + shared shell lib + the cached Kafka jars (hard links).
    ctx="$IMAGES_DIR/ctx-kafka"
    rm -rf "$ctx"
    mkdir -p "$ctx/lib" "$ctx/kafka"
    cp "$REPO_DIR/docker/kafka/Dockerfile" "$REPO_DIR/docker/kafka/entrypoint.sh" "$ctx/"
    cp "$SCRIPT_DIR/lib/common.sh" "$SCRIPT_DIR/lib/kafka-install.sh" "$ctx/lib/"
    cp -al "$KAFKA_HOME/lib" "$KAFKA_HOME/config" "$ctx/kafka/" 2>/dev/null \
        || cp -a "$KAFKA_HOME/lib" "$KAFKA_HOME/config" "$ctx/kafka/"
    docker_build kafka "$KAFKA_IMAGE" "$ctx" "$hash" --build-arg "KAFKA_VERSION=$KAFKA_VERSION"
    rm -rf "$ctx"
}

ensure_mariadb_image() {
    local hash
    hash=$(recipe_hash "$REPO_DIR"/docker/mariadb/*)
    if reuse_image "$MARIADB_IMAGE" "$hash"; then
        summary "$MARIADB_IMAGE" "reused"
        return 0
    fi
    ensure_base_image
    docker_build mariadb "$MARIADB_IMAGE" "$REPO_DIR/docker/mariadb" "$hash"
}

# The example jobs shipped in sluice/sluice under /opt/sluice/examples.
SLUICE_EXAMPLES="wordcount socket_wordcount datagen_wordcount kafka_wordcount mysql_cdc_kafka kafka_feed"

# The workspace version (Cargo.toml [workspace.package]).
workspace_version() {
    awk '/^\[workspace.package\]/ { p = 1; next } /^\[/ { p = 0 } p && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' \
        "$REPO_DIR/Cargo.toml"
}

# sluice/sluice: the binaries of SLUICE_BIN_DIR (else of a release build)
# without debug info, the image's default sluice.yaml, docker/sluice/Dockerfile.
cmd_sluice() {
    local version tag bin_dir ctx hash label name
    version=$(workspace_version)
    [ -n "$version" ] || die "no version in $REPO_DIR/Cargo.toml [workspace.package]"
    tag=${SLUICE_IMAGE:-sluice/sluice:$version}
    bin_dir=${SLUICE_BIN_DIR:-}
    if [ -z "$bin_dir" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust, or set SLUICE_BIN_DIR to built binaries"
        log "release build of the workspace's binaries (cargo build --release --workspace --bins)"
        (cd "$REPO_DIR" && cargo build --release --workspace --bins) >&2
        bin_dir="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"
    fi
    for name in sluice $SLUICE_EXAMPLES; do
        [ -x "$bin_dir/$name" ] || die "$bin_dir/$name is missing: build it (cargo build --workspace --bins) or set SLUICE_BIN_DIR"
    done
    take_lock "$SLUICE_CACHE_DIR/docker-images.lock"
    ensure_docker
    mkdir -p "$IMAGES_DIR"
    ensure_base_image
    hash=$( (cat "$REPO_DIR"/docker/sluice/*; for name in sluice $SLUICE_EXAMPLES; do cat "$bin_dir/$name"; done) |
        sha256sum | cut -c1-16)
    label=$(docker image inspect -f '{{ index .Config.Labels "dev.sluice.recipe" }}' "$tag" 2>/dev/null || true)
    if [ "$REBUILD" != 1 ] && [ "$label" = "$hash" ]; then
        log "$tag is up to date (recipe and binaries $hash)"
        echo "SLUICE_IMAGE=$tag"
        return 0
    fi
    ctx="$IMAGES_DIR/ctx-sluice"
    rm -rf "$ctx"
    mkdir -p "$ctx/bin" "$ctx/examples" "$ctx/conf"
    # Without debug info a debug build shrinks several times over.
    strip --strip-debug -o "$ctx/bin/sluice" "$bin_dir/sluice"
    for name in $SLUICE_EXAMPLES; do
        strip --strip-debug -o "$ctx/examples/$name" "$bin_dir/$name"
    done
    cp "$REPO_DIR/docker/sluice/Dockerfile" "$ctx/"
    cp "$REPO_DIR/docker/sluice/sluice.yaml" "$ctx/conf/"
    docker_build sluice "$tag" "$ctx" "$hash"
    rm -rf "$ctx"
    printf '  %s\n' "${SUMMARY[@]}" >&2
    echo "SLUICE_IMAGE=$tag"
}

# Proxy settings apt uses, if any, are needed by debootstrap and the builds too.
apt_proxy_env() {
    local p
    [ -n "${http_proxy:-}" ] && return 0
    p=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
    if [ -n "$p" ] && [ "$p" != DIRECT ]; then
        export http_proxy=$p
        log "using apt's HTTP proxy $p"
    fi
}

cmd_build() {
    local t0
    t0=$(now_s)
    take_lock "$SLUICE_CACHE_DIR/docker-images.lock"
    ensure_docker
    mkdir -p "$IMAGES_DIR"
    apt_proxy_env
    # Base first only if something needs it (ensure_*_image call it lazily).
    ensure_kafka_image
    local v
    for v in $KAFKA_MATRIX_VERSIONS; do
        [ "$v" = "$KAFKA_VERSION" ] && continue
        KAFKA_VERSION=$v KAFKA_HOME="$SLUICE_CACHE_DIR/kafka-$v" KAFKA_IMAGE="sluice/kafka:$v-$KAFKA_RECIPE" \
            ensure_kafka_image
    done
    ensure_mariadb_image
    if [ "$BASE_DONE" = 0 ]; then
        if image_exists "$BASE_IMAGE"; then summary "$BASE_IMAGE" "reused"; else summary "$BASE_IMAGE" "not needed (all images present)"; fi
    fi
    log "images (total $(( $(now_s) - t0 ))s):"
    printf '  %s\n' "${SUMMARY[@]}" >&2
    print_tags
}

# ---------------------------------------------------------------- smoke -----

SMOKE_CONTAINERS=()
smoke_cleanup() {
    local c
    for c in "${SMOKE_CONTAINERS[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1 || true
    done
}

# wait_log CONTAINER PATTERN SECONDS
wait_log() {
    local c=$1 pattern=$2 deadline=$(( $(now_s) + $3 ))
    until docker logs "$c" 2>&1 | grep -q "$pattern"; do
        if [ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" != true ]; then
            docker logs "$c" 2>&1 | tail -n 30 >&2
            die "container $c exited"
        fi
        if [ "$(now_s)" -ge "$deadline" ]; then
            docker logs "$c" 2>&1 | tail -n 30 >&2
            die "container $c: no '$pattern' within $3s"
        fi
        sleep 0.5
    done
}

# smoke_kafka NAME BOOTSTRAP DOCKER_RUN_ARGS...
smoke_kafka() {
    local name=$1 bootstrap=$2 t0 n
    shift 2
    t0=$(now_s)
    docker rm -f "$name" >/dev/null 2>&1 || true
    SMOKE_CONTAINERS+=("$name")
    docker run -d --name "$name" "$@" "$KAFKA_IMAGE" >/dev/null
    wait_log "$name" "Kafka Server started" 90
    kafka_tool api-versions --bootstrap-server "$bootstrap" >/dev/null \
        || die "$name: broker does not answer on $bootstrap"
    log "$name: up on $bootstrap after $(( $(now_s) - t0 ))s"
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --create --topic smoke --partitions 2 >/dev/null
    printf 'one\ntwo\nthree\n' |
        kafka_tool console-producer --bootstrap-server "$bootstrap" --topic smoke
    n=$(kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
        --topic smoke --from-beginning --max-messages 3 --timeout-ms 30000 2>/dev/null | wc -l)
    [ "$n" = 3 ] || die "$name: consumed $n of 3 records"
    # Transactions: needs the broker to reach itself (transaction markers).
    kafka_java org.apache.kafka.tools.ProducerPerformance --topic smoke-txn --num-records 500 \
        --record-size 50 --throughput -1 --transactional-id smoke-tx --transaction-duration-ms 100 \
        --producer-props "bootstrap.servers=$bootstrap" >/dev/null
    n=$(kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
        --topic smoke-txn --from-beginning --isolation-level read_committed --max-messages 500 \
        --timeout-ms 30000 2>/dev/null | wc -l)
    [ "$n" = 500 ] || die "$name: read_committed consumer got $n of 500 transactional records"
    log "$name: OK (topic create, produce/consume, transactional produce + read_committed)"
    docker rm -f "$name" >/dev/null
}

# smoke_mariadb NAME PORT DOCKER_RUN_ARGS...
smoke_mariadb() {
    local name=$1 port=$2 t0 out
    shift 2
    t0=$(now_s)
    docker rm -f "$name" >/dev/null 2>&1 || true
    SMOKE_CONTAINERS+=("$name")
    docker run -d --name "$name" "$@" "$MARIADB_IMAGE" >/dev/null
    wait_log "$name" "ready for connections" 60
    log "$name: ready after $(( $(now_s) - t0 ))s"
    out=$(mariadb -h127.0.0.1 -P"$port" -usluice -psluice sluice -N -e 'select 1') \
        || die "$name: cannot connect as sluice"
    [ "$out" = 1 ] || die "$name: unexpected answer '$out'"
    mariadb -h127.0.0.1 -P"$port" -usluice -psluice sluice \
        -e 'create table t (id int primary key); insert into t values (1); drop table t' \
        || die "$name: sluice cannot create tables in database sluice"
    out=$(mariadb -h127.0.0.1 -P"$port" -uroot -proot -N -e 'select @@log_bin, @@binlog_format') \
        || die "$name: cannot connect as root"
    log "$name: OK (sluice@sluice select/DDL, root login; log_bin/binlog_format: ${out//$'\t'/ })"
    docker rm -f "$name" >/dev/null
}

cmd_smoke() {
    cmd_build >/dev/null
    ensure_apt_packages mariadb-client
    kafka_install
    trap smoke_cleanup EXIT
    local kport=${SMOKE_KAFKA_PORT:-29092} mport=${SMOKE_MYSQL_PORT:-23306}
    smoke_kafka sluice-smoke-kafka-host "127.0.0.1:$kport" --network host -e "KAFKA_PORT=$kport"
    smoke_kafka sluice-smoke-kafka-mapped "127.0.0.1:$((kport + 100))" \
        -p "127.0.0.1:$((kport + 100)):9092" -e "KAFKA_ADVERTISED_PORT=$((kport + 100))"
    smoke_mariadb sluice-smoke-mariadb-host "$mport" --network host -e "MYSQL_PORT=$mport"
    smoke_mariadb sluice-smoke-mariadb-mapped "$((mport + 1))" -p "127.0.0.1:$((mport + 1)):3306"
    log "smoke test passed"
}

case "${1:-build}" in
    build) cmd_build ;;
    tags) print_tags ;;
    engine) take_lock "$SLUICE_CACHE_DIR/docker-images.lock"; ensure_docker ;;
    smoke) cmd_smoke ;;
    sluice) cmd_sluice ;;
    -h|--help|help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (try --help)" ;;
esac
