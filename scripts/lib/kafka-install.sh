# shellcheck shell=bash
# Kafka helpers shared by scripts/kafka-local.sh, scripts/docker-images.sh and
# the Kafka container entrypoint (docker/kafka/entrypoint.sh). Source it after
# scripts/lib/common.sh; do not execute it.
#
# Install (host only, needs java + mvn, both installed from apt if missing):
#   kafka_install      -> Kafka jars + runtime deps from Maven Central into
#                         $KAFKA_HOME/lib (= $SLUICE_CACHE_DIR/kafka-$KAFKA_VERSION)
# Run (host and container, needs java only):
#   kafka_write_server_config FILE   single-node KRaft (broker+controller) config
#   kafka_write_log4j FILE file|console
#   kafka_format_storage CONFIG DATA_DIR
#   kafka_java ARGS...               java -cp "$KAFKA_HOME/lib/*" ARGS...
#   kafka_tool NAME ARGS...          a console tool by name (api-versions,
#                                    console-producer, features, ...) whatever
#                                    package this Kafka version keeps it in
#
# Versions: 3.9.x and 4.x. Kafka 4 moved the console tools to
# org.apache.kafka.tools and logs through log4j2 (3.x: reload4j); the helpers
# below hide both. A new 4.x cluster is formatted at its newest feature levels
# (transaction.version=2, KIP-890); KAFKA_FORMAT_ARGS adds StorageTool format
# arguments, e.g. "--feature transaction.version=1" for a TV1 cluster.
#
# Environment (all optional):
#   KAFKA_VERSION            4.4.0     (org.apache.kafka:kafka_2.13 version; 3.9.x works too)
#   KAFKA_HOME               $SLUICE_CACHE_DIR/kafka-$KAFKA_VERSION
#   KAFKA_PORT               9092      client (PLAINTEXT) listener port
#   KAFKA_CONTROLLER_PORT    KAFKA_PORT+1 (KRaft controller listener, 127.0.0.1 only)
#   KAFKA_LISTEN_HOST        127.0.0.1 bind address of the client listener
#   KAFKA_ADVERTISED_HOST    127.0.0.1 host clients are told to connect to
#   KAFKA_ADVERTISED_PORT    KAFKA_PORT
#   KAFKA_INTERNAL_PORT      KAFKA_PORT+2; only used when the advertised address
#                            differs from the bound one (docker -p): the broker
#                            then talks to itself (txn markers) over 127.0.0.1:this
#   KAFKA_NUM_PARTITIONS     1         default partitions of auto-created topics
#   KAFKA_NODE_ID            1
#   KAFKA_HEAP_OPTS          -Xms256m -Xmx512m
#   KAFKA_EXTRA_CONFIG       extra server.properties lines (key=value, newline separated)
#   KAFKA_FORMAT_ARGS        extra arguments of the first storage format (4.x: --feature K=V)

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_SCALA_VERSION="${KAFKA_SCALA_VERSION:-2.13}"
KAFKA_HOME="${KAFKA_HOME:-$SLUICE_CACHE_DIR/kafka-$KAFKA_VERSION}"
# Pinned so the result does not depend on Maven's built-in default plugin version.
KAFKA_MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# kafka_major: the major version of $KAFKA_VERSION (3 or 4).
kafka_major() {
    printf '%s\n' "${KAFKA_VERSION%%.*}"
}

# kafka_logging_deps: the pom <dependency> elements of the logging backend:
# reload4j for 3.x, log4j2 for 4.x (what each version's own distribution ships).
kafka_logging_deps() {
    if [ "$(kafka_major)" -ge 4 ]; then
        cat <<'EOF'
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.25.5</version>
    </dependency>
EOF
    else
        cat <<'EOF'
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
    <dependency>
      <groupId>ch.qos.reload4j</groupId>
      <artifactId>reload4j</artifactId>
      <version>1.2.25</version>
    </dependency>
EOF
    fi
}

kafka_installed() {
    [ -f "$KAFKA_HOME/.complete" ] && [ -d "$KAFKA_HOME/lib" ]
}

# kafka_install: idempotent; downloads into $KAFKA_HOME.partial and renames it
# into place, so an interrupted install never leaves a half-populated $KAFKA_HOME.
kafka_install() {
    if kafka_installed; then
        return 0
    fi
    ensure_java
    command -v mvn >/dev/null 2>&1 || ensure_apt_packages maven
    local t0 tmp lockfd
    mkdir -p "$(dirname "$KAFKA_HOME")"
    # Serialise concurrent installs (e.g. several test processes starting at once).
    exec {lockfd}>"$KAFKA_HOME.lock"
    flock "$lockfd"
    if kafka_installed; then
        exec {lockfd}>&-
        return 0
    fi
    t0=$(now_s)
    log "installing Kafka $KAFKA_VERSION (jars from Maven Central) into $KAFKA_HOME"
    tmp="$KAFKA_HOME.partial"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice.local</groupId>
  <artifactId>kafka-dist</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$KAFKA_SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
$(kafka_logging_deps)
  </dependencies>
</project>
EOF
    if ! (cd "$tmp" && mvn -B -q -f pom.xml "$KAFKA_MVN_DEP_PLUGIN:copy-dependencies" \
            -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1); then
        tail -n 40 "$tmp/mvn.log" >&2
        die "mvn could not fetch Kafka $KAFKA_VERSION (is org.apache.kafka:kafka_$KAFKA_SCALA_VERSION:$KAFKA_VERSION on Maven Central?)"
    fi
    [ -f "$tmp/lib/kafka_$KAFKA_SCALA_VERSION-$KAFKA_VERSION.jar" ] || die "Kafka jar missing after mvn run"
    mkdir -p "$tmp/config"
    kafka_write_log4j "$tmp/config/log4j.properties" file
    kafka_write_log4j "$tmp/config/log4j-console.properties" console
    kafka_write_log4j "$tmp/config/tools-log4j.properties" tools
    (cd "$tmp/lib" && ls) >"$tmp/.complete"
    rm -rf "$KAFKA_HOME"
    rm -f "$tmp/pom.xml" "$tmp/mvn.log"
    mv "$tmp" "$KAFKA_HOME"
    exec {lockfd}>&-
    log "Kafka $KAFKA_VERSION installed ($(ls "$KAFKA_HOME/lib" | wc -l) jars, $(du -sh "$KAFKA_HOME/lib" | cut -f1)) in $(( $(now_s) - t0 ))s"
}

# kafka_write_log4j FILE MODE: MODE = file (server.log under -Dkafka.logs.dir),
# console (stdout, for containers) or tools (WARN+ to stderr, for CLI tools).
kafka_write_log4j() {
    local file=$1 mode=$2
    if [ "$(kafka_major)" -ge 4 ]; then
        kafka_write_log4j2 "$file" "$mode"
        return
    fi
    case "$mode" in
        file) cat >"$file" <<'EOF'
log4j.rootLogger=INFO, main
log4j.appender.main=org.apache.log4j.RollingFileAppender
log4j.appender.main.File=${kafka.logs.dir}/server.log
log4j.appender.main.MaxFileSize=50MB
log4j.appender.main.MaxBackupIndex=2
log4j.appender.main.layout=org.apache.log4j.PatternLayout
log4j.appender.main.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
EOF
        ;;
        console) cat >"$file" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
EOF
        ;;
        tools) cat >"$file" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
        ;;
        *) die "kafka_write_log4j: unknown mode $mode" ;;
    esac
}

# kafka_write_log4j2 FILE MODE: kafka_write_log4j for Kafka 4 (log4j2 properties).
kafka_write_log4j2() {
    local file=$1 mode=$2
    local quiet='logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN'
    case "$mode" in
        file) cat >"$file" <<EOF
appender.main.type = RollingFile
appender.main.name = main
appender.main.fileName = \${sys:kafka.logs.dir}/server.log
appender.main.filePattern = \${sys:kafka.logs.dir}/server.log.%i
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = [%d] %p %m (%c)%n
appender.main.policies.type = Policies
appender.main.policies.size.type = SizeBasedTriggeringPolicy
appender.main.policies.size.size = 50MB
appender.main.strategy.type = DefaultRolloverStrategy
appender.main.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.main.ref = main
$quiet
EOF
        ;;
        console) cat >"$file" <<EOF
appender.stdout.type = Console
appender.stdout.name = stdout
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = stdout
$quiet
EOF
        ;;
        tools) cat >"$file" <<'EOF'
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = stderr
EOF
        ;;
        *) die "kafka_write_log4j2: unknown mode $mode" ;;
    esac
}

# kafka_log_option FILE: the JVM option that makes this Kafka version log as FILE says.
kafka_log_option() {
    if [ "$(kafka_major)" -ge 4 ]; then
        printf '%s\n' "-Dlog4j2.configurationFile=$1"
    else
        printf '%s\n' "-Dlog4j.configuration=file:$1"
    fi
}

# kafka_java ARGS...: run java with the cached Kafka classpath.
# Default log4j config is the tools one (quiet, stderr); pass your own
# -Dlog4j.configuration=... first to override.
kafka_java() {
    java -Djava.awt.headless=true \
        "$(kafka_log_option "$KAFKA_HOME/config/tools-log4j.properties")" \
        -cp "$KAFKA_HOME/lib/*" "$@"
}

# kafka_tool_class NAME: the main class of a console tool in this version.
kafka_tool_class() {
    local v4=no
    [ "$(kafka_major)" -ge 4 ] && v4=yes
    case "$1:$v4" in
        api-versions:yes) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
        api-versions:no) echo kafka.admin.BrokerApiVersionsCommand ;;
        console-producer:yes) echo org.apache.kafka.tools.ConsoleProducer ;;
        console-producer:no) echo kafka.tools.ConsoleProducer ;;
        console-consumer:*) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        topics:*) echo org.apache.kafka.tools.TopicCommand ;;
        features:*) echo org.apache.kafka.tools.FeatureCommand ;;
        transactions:*) echo org.apache.kafka.tools.TransactionsCommand ;;
        producer-perf:*) echo org.apache.kafka.tools.ProducerPerformance ;;
        storage:*) echo kafka.tools.StorageTool ;;
        *) die "kafka_tool_class: unknown tool '$1'" ;;
    esac
}

# kafka_tool NAME ARGS...: runs a console tool (kafka_tool_class) with kafka_java.
kafka_tool() {
    local class
    class=$(kafka_tool_class "$1")
    shift
    kafka_java "$class" "$@"
}

# kafka_write_server_config FILE DATA_DIR: single-node KRaft broker+controller.
kafka_write_server_config() {
    local file=$1 data_dir=$2
    local port=${KAFKA_PORT:-9092}
    local ctrl_port=${KAFKA_CONTROLLER_PORT:-$((port + 1))}
    local listen_host=${KAFKA_LISTEN_HOST:-127.0.0.1}
    local adv_host=${KAFKA_ADVERTISED_HOST:-127.0.0.1}
    local adv_port=${KAFKA_ADVERTISED_PORT:-$port}
    local node_id=${KAFKA_NODE_ID:-1}
    local listeners advertised protomap inter
    listeners="PLAINTEXT://$listen_host:$port,CONTROLLER://127.0.0.1:$ctrl_port"
    advertised="PLAINTEXT://$adv_host:$adv_port"
    protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    inter=PLAINTEXT
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        advertised="$advertised,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
        protomap="$protomap,SASL_SSL:SASL_SSL"
    fi
    if [ "$adv_host:$adv_port" != "$listen_host:$port" ] && [ "$adv_host:$adv_port" != "127.0.0.1:$port" ]; then
        # The advertised address is not reachable from inside (e.g. docker -p
        # HOSTPORT:9092). The broker sends transaction markers etc. to itself
        # via the inter-broker listener, so give it one it can reach.
        local internal_port=${KAFKA_INTERNAL_PORT:-$((port + 2))}
        listeners="$listeners,INTERNAL://127.0.0.1:$internal_port"
        advertised="$advertised,INTERNAL://127.0.0.1:$internal_port"
        protomap="$protomap,INTERNAL:PLAINTEXT"
        inter=INTERNAL
    fi
    cat >"$file" <<EOF
# Generated by Sluice scripts (scripts/lib/kafka-install.sh); rewritten on every start.
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$node_id@127.0.0.1:$ctrl_port
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=$inter
log.dirs=$data_dir
num.partitions=${KAFKA_NUM_PARTITIONS:-1}
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
# Single node: internal topics must not ask for more replicas than we have.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Few internal partitions: creating 50 of each slows the first consumer group /
# first transaction down by seconds on a small machine.
offsets.topic.num.partitions=${KAFKA_OFFSETS_PARTITIONS:-1}
transaction.state.log.num.partitions=${KAFKA_TXN_LOG_PARTITIONS:-1}
# Allow long transaction timeouts (Flink-style exactly-once sinks use up to 1h).
transaction.max.timeout.ms=3600000
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
delete.topic.enable=true
EOF
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        kafka_secure_listener_config >>"$file"
    fi
    if [ -n "${KAFKA_EXTRA_CONFIG:-}" ]; then
        printf '# KAFKA_EXTRA_CONFIG\n%s\n' "$KAFKA_EXTRA_CONFIG" >>"$file"
    fi
}

# kafka_secure_material DIR: makes (once) a CA, a broker certificate for
# 127.0.0.1 and localhost, and a SASL password, in DIR (0700):
#   DIR/ca.pem                 the CA clients trust (ssl.ca.location)
#   DIR/broker-keystore.pem    the broker's key and certificate (PEM keystore)
#   DIR/sasl-user, DIR/sasl-password   the SASL user (PLAIN and SCRAM-SHA-256/512)
kafka_secure_material() {
    local dir=$1
    [ -f "$dir/broker-keystore.pem" ] && [ -f "$dir/sasl-password" ] && return 0
    command -v openssl >/dev/null || die "openssl is needed for the SASL_SSL listener (apt-get install openssl)"
    ( umask 077
      mkdir -p "$dir"
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem" 2>/dev/null
      openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 825 -subj "/CN=Sluice test Kafka CA" \
          -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out "$dir/ca.pem"
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/broker-key.pem" 2>/dev/null
      openssl req -new -key "$dir/broker-key.pem" -subj "/CN=localhost" -out "$dir/broker.csr"
      printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
          "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/broker.ext"
      openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
          -days 825 -sha256 -extfile "$dir/broker.ext" -out "$dir/broker.pem" 2>/dev/null
      cat "$dir/broker-key.pem" "$dir/broker.pem" >"$dir/broker-keystore.pem"
      rm -f "$dir/broker.csr" "$dir/broker.ext"
      printf '%s\n' "${KAFKA_SASL_USER:-sluice}" >"$dir/sasl-user"
      printf '%s\n' "${KAFKA_SASL_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')}" >"$dir/sasl-password"
      chmod 644 "$dir/ca.pem" )
}

# kafka_secure_listener_config: server.properties lines of the SASL_SSL
# listener (KAFKA_SASL_SSL_PORT), with the material of kafka_secure_material.
kafka_secure_listener_config() {
    local dir=${KAFKA_TLS_DIR:?} user password
    user=$(cat "$dir/sasl-user")
    password=$(cat "$dir/sasl-password")
    cat <<EOF
# SASL_SSL listener (KAFKA_SASL_SSL_PORT): TLS with $dir/ca.pem, SASL PLAIN and SCRAM for user '$user'
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/broker-keystore.pem
EOF
}

# kafka_random_cluster_id: 16 random bytes, URL-safe base64 without padding
# (the format kafka-storage random-uuid prints), without paying for a JVM start.
kafka_random_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        case "$id" in -*) continue ;; esac   # Kafka avoids a leading '-' too
        printf '%s\n' "$id"
        return 0
    done
}

# kafka_format_storage CONFIG DATA_DIR: formats KRaft storage unless already done.
kafka_format_storage() {
    local config=$1 data_dir=$2
    if [ -f "$data_dir/meta.properties" ]; then
        return 0
    fi
    mkdir -p "$data_dir"
    local cid
    cid=${KAFKA_CLUSTER_ID:-$(kafka_random_cluster_id)}
    log "formatting KRaft storage in $data_dir (cluster id $cid)"
    local scram=()
    if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
        local user password
        user=$(cat "${KAFKA_TLS_DIR:?}/sasl-user")
        password=$(cat "$KAFKA_TLS_DIR/sasl-password")
        scram=(--add-scram "SCRAM-SHA-256=[name=$user,password=$password]"
               --add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
    fi
    # shellcheck disable=SC2206  # word splitting of the extra arguments is wanted
    local extra=(${KAFKA_FORMAT_ARGS:-})
    kafka_tool storage format -t "$cid" -c "$config" --ignore-formatted "${scram[@]}" "${extra[@]}" >&2 \
        || die "kafka storage format failed"
}

# kafka_server_cmd CONFIG LOG4J_FILE LOG_DIR: prints nothing, sets the array
# KAFKA_SERVER_CMD to the java command line that runs the broker.
kafka_server_cmd() {
    local config=$1 log4j=$2 logdir=$3
    # shellcheck disable=SC2206
    local heap=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m})
    # shellcheck disable=SC2034  # used by the caller
    KAFKA_SERVER_CMD=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
        "$(kafka_log_option "$log4j")" -Dkafka.logs.dir="$logdir"
        -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$config")
}
