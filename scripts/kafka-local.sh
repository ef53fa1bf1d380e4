#!/usr/bin/env bash
# kafka-local.sh - a single-node Apache Kafka (KRaft, broker+controller in one
# JVM) on this machine, for Sluice's tests. No Docker needed: the first use
# fetches the Kafka jars and their runtime deps from Maven Central with `mvn`
# (java and maven are apt-installed if missing) and caches them in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/kafka-<version>/lib
#
# Usage:
#   scripts/kafka-local.sh start        install if needed, format storage on first
#                                       start, start the broker, wait until it
#                                       answers (no-op if already running)
#   scripts/kafka-local.sh stop         stop it and wait (no-op if not running)
#   scripts/kafka-local.sh restart
#   scripts/kafka-local.sh status       prints running/stopped; exit 0 = running, 1 = stopped
#   scripts/kafka-local.sh logs [-f] [N]  last N (200) lines of the broker log, -f follows
#   scripts/kafka-local.sh reset        stop and delete all data (next start reformats)
#   scripts/kafka-local.sh install      only fetch the jars; prints KAFKA_HOME
#   scripts/kafka-local.sh classpath    prints the java classpath ("<home>/lib/*")
#   scripts/kafka-local.sh topics ARGS...            kafka-topics (adds --bootstrap-server)
#   scripts/kafka-local.sh console-producer TOPIC [ARGS...]
#   scripts/kafka-local.sh console-consumer TOPIC [ARGS...]   e.g. --from-beginning --max-messages 3
#   scripts/kafka-local.sh run-class CLASS [ARGS...]  any Kafka tool class, e.g.
#       run-class org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#       run-class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server 127.0.0.1:9092 --list
#       run-class org.apache.kafka.tools.TransactionsCommand --bootstrap-server 127.0.0.1:9092 list
#       run-class org.apache.kafka.tools.GetOffsetShell --bootstrap-server 127.0.0.1:9092 --topic t
#
# Environment:
#   KAFKA_PORT             client port (default 9092); controller on KAFKA_PORT+1 (9093)
#   KAFKA_CONTROLLER_PORT  override the controller port
#   KAFKA_NUM_PARTITIONS   partitions of auto-created topics (default 1)
#   KAFKA_VERSION          Kafka version from Maven Central (default 4.4.0; 3.9.x works too)
#   KAFKA_FORMAT_ARGS      extra arguments of the first storage format, e.g.
#                          "--feature transaction.version=1" (4.x)
#   SLUICE_KAFKA_DIR       data/log/pid dir (default <cache>/sluice/kafka-local, or
#                          kafka-local-<port> when KAFKA_PORT is not 9092)
#   KAFKA_HEAP_OPTS        JVM heap flags (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker (default 60)
#   KAFKA_EXTRA_CONFIG     extra server.properties lines
#   KAFKA_SASL_SSL_PORT    also a SASL_SSL listener on 127.0.0.1:PORT, with a CA, a broker
#                          certificate and a SASL user (PLAIN, SCRAM-SHA-256/512) made in
#                          <dir>/tls on first start: ca.pem, sasl-user, sasl-password
# Bootstrap servers for clients: 127.0.0.1:$KAFKA_PORT (single-node,
# transactions enabled: replication factor / min ISR of internal topics = 1).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SLUICE_LOG_TAG=kafka-local
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"
# shellcheck source=lib/kafka-install.sh
. "$SCRIPT_DIR/lib/kafka-install.sh"

export KAFKA_PORT="${KAFKA_PORT:-9092}"
if [ "$KAFKA_PORT" = 9092 ]; then
    KAFKA_DIR="${SLUICE_KAFKA_DIR:-$SLUICE_CACHE_DIR/kafka-local}"
else
    KAFKA_DIR="${SLUICE_KAFKA_DIR:-$SLUICE_CACHE_DIR/kafka-local-$KAFKA_PORT}"
fi
DATA_DIR="$KAFKA_DIR/data"
LOG_DIR="$KAFKA_DIR/logs"
CONFIG="$KAFKA_DIR/server.properties"
PID_FILE="$KAFKA_DIR/kafka.pid"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; }

# running_pid: prints the broker pid and succeeds if our broker is alive.
running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: it must be a Kafka broker JVM.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    printf '%s\n' "$pid"
}

# broker_answers: the broker responds to an ApiVersions request.
broker_answers() {
    timeout 30 java -Djava.awt.headless=true \
        "$(kafka_log_option "$KAFKA_HOME/config/tools-log4j.properties")" \
        -cp "$KAFKA_HOME/lib/*" "$(kafka_tool_class api-versions)" \
        --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1
}

cmd_start() {
    local pid
    if pid=$(running_pid); then
        log "already running (pid $pid), bootstrap $BOOTSTRAP; logs: $LOG_DIR/server.log"
        return 0
    fi
    rm -f "$PID_FILE"
    if port_open 127.0.0.1 "$KAFKA_PORT"; then
        die "port $KAFKA_PORT is already in use by another process (not our broker: no live pid in $PID_FILE). Stop it or set KAFKA_PORT."
    fi
    kafka_install
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        export KAFKA_TLS_DIR="$KAFKA_DIR/tls"
        kafka_secure_material "$KAFKA_TLS_DIR"
        log "SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_SSL_PORT: CA $KAFKA_TLS_DIR/ca.pem, user and password in $KAFKA_TLS_DIR/sasl-{user,password}"
    fi
    kafka_write_server_config "$CONFIG" "$DATA_DIR"
    kafka_format_storage "$CONFIG" "$DATA_DIR"
    kafka_server_cmd "$CONFIG" "$KAFKA_HOME/config/log4j.properties" "$LOG_DIR"

    local t0
    t0=$(now_s)
    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}), data in $DATA_DIR"
    # setsid + nohup: the broker outlives this script and its terminal;
    # stdout/stderr (JVM crashes, early errors) go to kafka.out.
    nohup setsid "${KAFKA_SERVER_CMD[@]}" >"$LOG_DIR/kafka.out" 2>&1 </dev/null {SLUICE_LOCK_FD}>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local deadline=$((t0 + START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            warn "broker exited during startup; last log lines:"
            tail -n 30 "$LOG_DIR/kafka.out" >&2 || true
            tail -n 30 "$LOG_DIR/server.log" >&2 2>/dev/null || true
            die "Kafka failed to start (full logs in $LOG_DIR)"
        fi
        if port_open 127.0.0.1 "$KAFKA_PORT" && broker_answers; then
            break
        fi
        if [ "$(now_s)" -ge "$deadline" ]; then
            tail -n 30 "$LOG_DIR/server.log" >&2 2>/dev/null || true
            die "Kafka did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (still running as pid $pid; see $LOG_DIR/server.log, or run '$0 stop')"
        fi
        sleep 0.5
    done
    log "Kafka is up on $BOOTSTRAP (pid $pid, ready in $(( $(now_s) - t0 ))s)"
    log "logs: $LOG_DIR/server.log  (or: $0 logs -f)"
}

cmd_stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(now_s) + STOP_TIMEOUT ))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(now_s)" -ge "$deadline" ]; then
            warn "still running after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        echo "running (pid $pid, bootstrap $BOOTSTRAP, logs $LOG_DIR/server.log)"
        return 0
    fi
    echo "stopped"
    return 1
}

cmd_logs() {
    local follow=0 lines=200
    while [ $# -gt 0 ]; do
        case "$1" in
            -f|--follow) follow=1 ;;
            *[!0-9]*|'') die "logs: unexpected argument '$1' (usage: logs [-f] [N])" ;;
            *) lines=$1 ;;
        esac
        shift
    done
    [ -f "$LOG_DIR/server.log" ] || die "no log yet at $LOG_DIR/server.log (never started?)"
    if [ "$follow" = 1 ]; then
        exec tail -n "$lines" -F "$LOG_DIR/server.log"
    fi
    tail -n "$lines" "$LOG_DIR/server.log"
}

# has_arg NAME ARGS...: whether ARGS contains NAME.
has_arg() {
    local want=$1 a
    shift
    for a in "$@"; do [ "$a" = "$want" ] && return 0; done
    return 1
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
        start|stop|restart|reset) take_lock "$KAFKA_DIR.lock" ;;
    esac
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart) cmd_stop; cmd_start ;;
        status) cmd_status ;;
        logs) cmd_logs "$@" ;;
        reset)
            cmd_stop
            log "deleting $DATA_DIR and $LOG_DIR"
            rm -rf "$DATA_DIR" "$LOG_DIR" "$CONFIG"
            ;;
        install) kafka_install; echo "$KAFKA_HOME" ;;
        classpath) kafka_install; echo "$KAFKA_HOME/lib/*" ;;
        run-class)
            [ $# -ge 1 ] || die "usage: $0 run-class CLASS [ARGS...]"
            kafka_install
            kafka_java "$@"
            ;;
        topics)
            kafka_install
            if has_arg --bootstrap-server "$@"; then
                kafka_java org.apache.kafka.tools.TopicCommand "$@"
            else
                kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
            fi
            ;;
        console-producer)
            [ $# -ge 1 ] || die "usage: $0 console-producer TOPIC [ARGS...]"
            local topic=$1
            shift
            kafka_install
            kafka_tool console-producer --bootstrap-server "$BOOTSTRAP" --topic "$topic" "$@"
            ;;
        console-consumer)
            [ $# -ge 1 ] || die "usage: $0 console-consumer TOPIC [ARGS...]"
            local topic=$1
            shift
            kafka_install
            kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" --topic "$topic" "$@"
            ;;
        -h|--help|help) usage ;;
        '') usage; exit 2 ;;
        *) usage; die "unknown command '$cmd'" ;;
    esac
}

main "$@"
