#!/usr/bin/env bash
# bench-state-vs-flink.sh - the state backend benchmark (bench_state's datagen
# WordCount over many distinct keys) on Sluice and on Apache Flink, side by
# side on this machine: records/s, peak RSS and CPU per record for the heap
# and the RocksDB backend, each without checkpoints and with a 1 s interval.
#
# Usage:
#   scripts/bench-state-vs-flink.sh [--keys 10000000] [--records 20000000]
#                                   [--repeat 1] [--configs LIST] [--engines sluice,flink]
#                                   [--skew S]
#
#   --configs   backend:interval pairs, default
#               hashmap:off,rocksdb:off,hashmap:1s,rocksdb:1s
#   --repeat N  N interleaved rounds (every other one in reverse order); the
#               summary gives medians.
#   --skew S    Zipf-like key frequencies after every key has appeared once,
#               as bench_state --skew S (default 0: uniform).
#
# Both engines run the job at parallelism 1, every configuration in its own
# process, with the same key sequence. Flink (version in
# bench/flink/pom.xml) runs in a local MiniCluster with its defaults except a
# JVM heap of FLINK_HEAP (default 8g: its heap backend keeps 10 M keys as Java
# objects) and the settings in FLINK_SETTINGS (space-separated key=value). By
# default they give Flink's RocksDB what Sluice's has by default: a 256 MiB
# block cache, 4 KiB blocks, three 64 MiB write buffers, 2 background threads
# and bloom filters of 10 bits per key (Flink's own defaults, managed memory and
# no bloom filter, did not finish 20 M records in 20 minutes here). Flink's
# RocksDB checkpoints are its default incremental ones (no changelog). Its
# records/s are over the job's net runtime, which leaves out starting the
# MiniCluster.
#
# Needs: cargo; java 17 and maven (apt-installed if missing); the first run
# fetches Flink's jars from Maven Central into ~/.m2.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
export SLUICE_LOG_TAG=bench-vs-flink
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

keys=10000000
records=
repeat=1
skew=0
configs=hashmap:off,rocksdb:off,hashmap:1s,rocksdb:1s
engines=sluice,flink
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) keys=$2; shift 2 ;;
        --records) records=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --configs) configs=$2; shift 2 ;;
        --engines) engines=$2; shift 2 ;;
        --skew) skew=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
records=${records:-$((2 * keys))}
FLINK_HEAP=${FLINK_HEAP:-8g}
FLINK_SETTINGS=${FLINK_SETTINGS:-state.backend.rocksdb.memory.managed=false state.backend.rocksdb.block.cache-size=256mb state.backend.rocksdb.block.blocksize=4kb state.backend.rocksdb.writebuffer.size=64mb state.backend.rocksdb.writebuffer.count=3 state.backend.rocksdb.thread.num=2 state.backend.rocksdb.use-bloom-filter=true}

for c in ${configs//,/ }; do
    case "$c" in
        hashmap:*:*|rocksdb:*:*) die "configuration '$c': job settings are bench_state's alone; give Flink's in FLINK_SETTINGS" ;;
        hashmap:?*|rocksdb:?*) ;;
        *) die "configuration '$c' is not backend:interval with backend hashmap or rocksdb" ;;
    esac
done

for e in ${engines//,/ }; do
    [ "$e" = sluice ] || [ "$e" = flink ] || die "engine '$e' is neither sluice nor flink"
done

if [[ ",$engines," == *,sluice,* ]]; then
    log "building bench_state (release)"
    (cd "$ROOT" && cargo build --release -q -p sluice-bench --bin bench_state)
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    SLUICE_BENCH="$target_dir/release/bench_state"
fi
if [[ ",$engines," == *,flink,* ]]; then
    command -v javac >/dev/null 2>&1 || ensure_apt_packages openjdk-17-jdk-headless
    command -v mvn >/dev/null 2>&1 || ensure_apt_packages maven
    log "building the Flink job (bench/flink, first run fetches Flink from Maven Central)"
    mvn_log="$SLUICE_CACHE_DIR/bench-flink-build.log"
    mkdir -p "$SLUICE_CACHE_DIR"
    (cd "$ROOT/bench/flink" && mvn -B -Dstyle.color=never package -DskipTests >"$mvn_log" 2>&1) \
        || { tail -n 40 "$mvn_log" >&2; die "the Flink job did not build (Maven's output: $mvn_log)"; }
    FLINK_CP="$ROOT/bench/flink/target/flink-state-bench-0.1.0.jar:$ROOT/bench/flink/target/lib/*"
fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT

# run ROUND ENGINE CONFIG: one run; appends "round engine config rec/s" to $results.
run() {
    local round=$1 engine=$2 config=$3 line rate
    if [ "$engine" = sluice ]; then
        line=$("$SLUICE_BENCH" --keys "$keys" --records "$records" --skew "$skew" --configs "$config" 2>&1 | grep '^round 1:') \
            || die "bench_state $config failed"
        line=${line#round 1: }
    else
        # shellcheck disable=SC2086 # FLINK_SETTINGS is a list of words
        line=$(java "-Xmx$FLINK_HEAP" -cp "$FLINK_CP" sluice.bench.FlinkStateBench \
            "${config%%:*}" "${config#*:}" "$keys" "$records" "$skew" $FLINK_SETTINGS 2>&1 | grep '^RESULT') \
            || die "the Flink job $config failed"
        line=${line#RESULT }
    fi
    rate=$(grep -o '[0-9]* rec/s' <<<"$line" | cut -d' ' -f1)
    printf '%-7s %s\n' "$engine" "$line"
    printf '%s %s %s %s\n' "$round" "$engine" "$config" "$rate" >>"$results"
}

echo "datagen WordCount, $keys keys, $records records, skew $skew, parallelism 1, $repeat round(s)"
for round in $(seq 1 "$repeat"); do
    list=()
    for c in ${configs//,/ }; do
        for e in ${engines//,/ }; do list+=("$e $c"); done
    done
    if [ $((round % 2)) -eq 0 ]; then
        reversed=()
        for ((i = ${#list[@]} - 1; i >= 0; i--)); do reversed+=("${list[$i]}"); done
        list=("${reversed[@]}")
    fi
    echo "round $round:"
    for item in "${list[@]}"; do
        # shellcheck disable=SC2086 # two words: engine and config
        run "$round" $item
    done
done

# The medians, then the ratios the issue asks for, per engine: of the
# medians, and within each round (median and range over the rounds), which
# slow drift of the machine does not bias.
awk -v configs="$configs" -v engines="$engines" '
function sort(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
}
function median(list,   n, a) {
    n = split(list, a, " "); sort(a, n)
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# summary(ENGINE, NUM, DEN, COST): NUM / DEN for ENGINE, of the medians and per round, as a
# percentage (COST: 100 - it).
function summary(e, num, den, cost,   r, list, n, a, v, out) {
    if (!m[e " " num] || !m[e " " den]) return ""
    v = 100 * m[e " " num] / m[e " " den]
    out = sprintf("%.1f %%", cost ? 100 - v : v)
    list = ""
    for (r = 1; r <= rounds; r++) if (val[r, e " " num] && val[r, e " " den]) {
        v = 100 * val[r, e " " num] / val[r, e " " den]
        list = list " " (cost ? 100 - v : v)
    }
    n = split(list, a, " ")
    if (n > 1) { sort(a, n); out = out sprintf("; per round %.1f %% (%.1f to %.1f %%)", median(list), a[1], a[n]) }
    return out
}
{ runs[$2 " " $3] = runs[$2 " " $3] " " $4; val[$1, $2 " " $3] = $4; if ($1 > rounds) rounds = $1 }
END {
    nc = split(configs, cs, ","); ne = split(engines, es, ",")
    print "medians (records/s):"
    for (i = 1; i <= nc; i++) for (j = 1; j <= ne; j++) {
        k = es[j] " " cs[i]
        if (k in runs) { m[k] = median(runs[k]); printf "  %-22s %10.0f\n", k, m[k] }
    }
    for (j = 1; j <= ne; j++) {
        e = es[j]
        if ((s = summary(e, "rocksdb:off", "hashmap:off", 0)) != "") print e ": RocksDB / heap, no checkpoints: " s
        if ((s = summary(e, "hashmap:1s", "hashmap:off", 1)) != "") print e ": cost of 1 s checkpoints, heap: " s
        if ((s = summary(e, "rocksdb:1s", "rocksdb:off", 1)) != "") print e ": cost of 1 s checkpoints, RocksDB: " s
    }
    for (i = 1; i <= nc; i++) {
        s = m["sluice " cs[i]]; f = m["flink " cs[i]]
        if (s && f) printf "Sluice / Flink, %s: %.2fx\n", cs[i], s / f
    }
}' "$results"
