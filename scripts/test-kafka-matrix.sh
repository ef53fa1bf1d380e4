#!/usr/bin/env bash
# The Kafka test suites against another Kafka version than the default
# (scripts/test.sh runs every suite against Kafka 4.4; this script runs the
# Kafka ones again against 3.9, the last 3.x line). scripts/test.sh calls it
# after the main run; it also runs on its own once the images exist:
#
#   scripts/test-kafka-matrix.sh [VERSION]      (default 3.9.2)
#
# It starts a broker of VERSION with scripts/kafka-local.sh on its own port
# (KAFKA_MATRIX_PORT, default 9192) and data dir, points the suites at it and
# at that version's test image (sluice/kafka:VERSION-<recipe>, built by
# scripts/docker-images.sh when VERSION is in KAFKA_MATRIX_VERSIONS), runs
#   integration-tests: kafka, kafka_connectors    (client, source, sinks, EndTxn replays)
#   examples:          kafka_wordcount, kafka_delivery, kafka_secure
#                      (SIGKILL loops, the crash before commit, SASL_SSL)
#   engine/cluster:    cluster_kafka                (a TaskManager killed mid-job)
# and stops the broker again. Tests about features VERSION lacks (Kafka 4's
# transaction.version) say so and pass.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/common.sh
. scripts/lib/kafka-install.sh

VERSION=${1:-3.9.2}
PORT=${KAFKA_MATRIX_PORT:-9192}
RECIPE=$(sed -n 's/^KAFKA_RECIPE=//p' scripts/docker-images.sh)
IMAGE="sluice/kafka:$VERSION-$RECIPE"
DIR="$SLUICE_CACHE_DIR/kafka-matrix-$VERSION"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "error: the test image $IMAGE is missing; build it with" \
        "KAFKA_MATRIX_VERSIONS=$VERSION scripts/docker-images.sh build" >&2
    exit 1
fi

broker() {
    KAFKA_VERSION=$VERSION KAFKA_PORT=$PORT SLUICE_KAFKA_DIR=$DIR KAFKA_NUM_PARTITIONS=1 \
        scripts/kafka-local.sh "$@"
}
# A fresh cluster each run: storage is formatted by the version under test.
broker reset >/dev/null 2>&1 || true
broker start
trap 'broker stop >/dev/null 2>&1 || true' EXIT

echo "== Kafka $VERSION: broker 127.0.0.1:$PORT, image $IMAGE"
KAFKA_VERSION=$VERSION SLUICE_KAFKA_BOOTSTRAP="127.0.0.1:$PORT" SLUICE_KAFKA_IMAGE=$IMAGE \
    cargo test --workspace --no-fail-fast \
    --test kafka --test kafka_connectors \
    --test kafka_wordcount --test kafka_delivery --test kafka_secure \
    --test cluster_kafka
