#!/bin/bash
# Entrypoint of sluice/kafka: formats KRaft storage (first start of this
# container / empty volume) and runs a single-node broker+controller in the
# foreground (PID 1, stops cleanly on SIGTERM). Listener settings come from the
# environment, see /opt/sluice/lib/kafka-install.sh (kafka_write_server_config).
#   CMD kafka (default)  start the broker
#   CMD anything else    exec it (e.g. `docker run -it --rm sluice/kafka:... bash`)
set -euo pipefail

if [ "${1:-kafka}" != kafka ]; then
    exec "$@"
fi

export SLUICE_LOG_TAG=kafka-entrypoint
. /opt/sluice/lib/common.sh
. /opt/sluice/lib/kafka-install.sh

state_dir=/var/lib/kafka
data_dir="$state_dir/data"
config="$state_dir/server.properties"
mkdir -p "$data_dir" "$state_dir/logs"

kafka_write_server_config "$config" "$data_dir"
kafka_format_storage "$config" "$data_dir"
log "starting Kafka $KAFKA_VERSION: listeners $(grep '^listeners=' "$config" | cut -d= -f2-)," \
    "advertised $(grep '^advertised.listeners=' "$config" | cut -d= -f2-)"
kafka_server_cmd "$config" "$KAFKA_HOME/config/log4j-console.properties" "$state_dir/logs"
exec "${KAFKA_SERVER_CMD[@]}"
