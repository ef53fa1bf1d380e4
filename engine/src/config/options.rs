//! Every key Sluice understands, with its type, default and description.

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer ≥ 1.
    PositiveInt,
    /// An integer ≥ 0.
    NonNegativeInt,
    /// A decimal number > 0.
    PositiveNumber,
    /// A TCP port (0 picks a free one).
    Port,
    /// A TCP port or an inclusive range `LO-HI`, as Flink's
    /// `metrics.reporter.prom.port: 9250-9260` (each process takes the first
    /// free port of it; 0 picks any free one).
    PortRange,
    /// A duration such as `100ms`, `1s`, `5 min`.
    Duration,
    /// A memory size such as `256mb`, `1g` or a number of bytes.
    MemorySize,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// Any text.
    Text,
}

/// A declared configuration key.
#[derive(Debug)]
pub struct ConfigOption {
    /// The key, e.g. `parallelism.default`.
    pub key: &'static str,
    /// Its type.
    pub kind: ValueKind,
    /// Its default as text, if it has one.
    pub default: Option<&'static str>,
    /// What it does.
    pub description: &'static str,
}

/// Every key Sluice understands.
pub const OPTIONS: &[ConfigOption] = &[
    ConfigOption {
        key: "parallelism.default",
        kind: ValueKind::PositiveInt,
        default: None,
        description: "Parallelism of operators that set none (after the environment's and -p); default: the number of cores.",
    },
    ConfigOption {
        key: "pipeline.max-parallelism",
        kind: ValueKind::PositiveInt,
        default: Some("128"),
        description: "Number of key groups; the upper bound for the parallelism of keyed operators.",
    },
    ConfigOption {
        key: "taskmanager.numberOfTaskSlots",
        kind: ValueKind::PositiveInt,
        default: None,
        description: "Slots per TaskManager; default in a local run: the job's largest parallelism.",
    },
    ConfigOption {
        key: "local.number-taskmanager",
        kind: ValueKind::PositiveInt,
        default: Some("1"),
        description: "Number of TaskManagers in the local mini cluster.",
    },
    ConfigOption {
        key: "execution.runtime-mode",
        kind: ValueKind::Enum(&["STREAMING", "BATCH", "AUTOMATIC"]),
        default: Some("STREAMING"),
        description: "STREAMING emits running results; BATCH emits keyed aggregates once at end of input (all sources must be bounded); AUTOMATIC picks BATCH when all sources are bounded.",
    },
    ConfigOption {
        key: "execution.buffer-timeout",
        kind: ValueKind::Duration,
        default: Some("100ms"),
        description: "Longest time a partly filled batch waits before it is sent downstream.",
    },
    ConfigOption {
        key: "taskmanager.network.batch-size",
        kind: ValueKind::PositiveInt,
        default: Some("1024"),
        description: "Records per batch sent between tasks.",
    },
    ConfigOption {
        key: "taskmanager.network.channel-capacity",
        kind: ValueKind::PositiveInt,
        default: Some("4"),
        description: "Batches a channel between two subtasks holds before the sender blocks (backpressure).",
    },
    ConfigOption {
        key: "slot.request.timeout",
        kind: ValueKind::Duration,
        default: Some("300s"),
        description: "How long a job waits for enough slots before it fails.",
    },
    ConfigOption {
        key: "metrics.reporter.prom.port",
        kind: ValueKind::PortRange,
        default: None,
        description: "Serve Prometheus metrics at http://HOST:PORT/metrics (also --metrics-port); a range LO-HI gives each process of a host the first free port of it.",
    },
    ConfigOption {
        key: "metrics.reporter.prom.host",
        kind: ValueKind::Text,
        default: Some("127.0.0.1"),
        description: "Address the metrics endpoint binds to.",
    },
    ConfigOption {
        key: "execution.checkpointing.interval",
        kind: ValueKind::Duration,
        default: None,
        description: "Trigger a checkpoint this often (also --checkpoint-interval); unset: no checkpoints.",
    },
    ConfigOption {
        key: "execution.checkpointing.mode",
        kind: ValueKind::Enum(&["EXACTLY_ONCE", "AT_LEAST_ONCE"]),
        default: Some("EXACTLY_ONCE"),
        description: "EXACTLY_ONCE aligns barriers (inputs that delivered barrier n wait for the others); AT_LEAST_ONCE does not.",
    },
    ConfigOption {
        key: "execution.checkpointing.timeout",
        kind: ValueKind::Duration,
        default: Some("10min"),
        description: "A checkpoint not complete after this long is aborted.",
    },
    ConfigOption {
        key: "execution.checkpointing.min-pause",
        kind: ValueKind::Duration,
        default: Some("0ms"),
        description: "Least time between the end of a checkpoint and the next trigger.",
    },
    ConfigOption {
        key: "execution.checkpointing.max-concurrent-checkpoints",
        kind: ValueKind::PositiveInt,
        default: Some("1"),
        description: "Checkpoints in flight at once.",
    },
    ConfigOption {
        key: "execution.checkpointing.tolerable-failed-checkpoints",
        kind: ValueKind::NonNegativeInt,
        default: Some("0"),
        description: "Consecutive failed checkpoints tolerated before the job fails over.",
    },
    ConfigOption {
        key: "state.checkpoints.dir",
        kind: ValueKind::Text,
        default: None,
        description: "Directory of checkpoints, <dir>/<job-id>/chk-<n>/ (also --checkpoint-dir); a job started with the same directory resumes from its latest completed checkpoint.",
    },
    ConfigOption {
        key: "state.checkpoints.num-retained",
        kind: ValueKind::PositiveInt,
        default: Some("1"),
        description: "Completed checkpoints kept; older ones are deleted.",
    },
    ConfigOption {
        key: "state.backend",
        kind: ValueKind::Enum(&["hashmap", "rocksdb"]),
        default: Some("hashmap"),
        description: "Keyed state backend: hashmap (typed values on the heap) or rocksdb (one RocksDB instance per keyed subtask, incremental checkpoints).",
    },
    ConfigOption {
        key: "state.backend.rocksdb.localdir",
        kind: ValueKind::Text,
        default: None,
        description: "Where RocksDB instances keep their working files (default: sluice-rocksdb-<uid> in the system temp directory); it must belong to the user and not be writable by others.",
    },
    ConfigOption {
        key: "state.backend.rocksdb.cache-entries",
        kind: ValueKind::PositiveInt,
        default: Some("100000"),
        description: "Entries per state kept deserialized in the write-back cache in front of RocksDB.",
    },
    ConfigOption {
        key: "state.backend.rocksdb.block.cache-size",
        kind: ValueKind::MemorySize,
        default: Some("256mb"),
        description: "RocksDB block cache shared by all RocksDB instances of a process (data, index and filter blocks).",
    },
    ConfigOption {
        key: "state.backend.rocksdb.block.blocksize",
        kind: ValueKind::MemorySize,
        default: Some("4kb"),
        description: "Approximate size of a RocksDB data block: larger blocks mean smaller indexes, smaller ones less data read per lookup.",
    },
    ConfigOption {
        key: "state.backend.rocksdb.block.cache-index-and-filter-blocks",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("false"),
        description: "Keep RocksDB index and filter blocks in the block cache (memory bounded by its size) instead of pinned with their files (faster lookups; about 1.5 bytes per key more).",
    },
    ConfigOption {
        key: "state.backend.rocksdb.writebuffer.size",
        kind: ValueKind::MemorySize,
        default: Some("64mb"),
        description: "Size of one RocksDB memtable per state; larger ones mean fewer, bigger flushes.",
    },
    ConfigOption {
        key: "state.backend.rocksdb.writebuffer.count",
        kind: ValueKind::PositiveInt,
        default: Some("3"),
        description: "RocksDB memtables per state, the active one included (writes stall when all are full).",
    },
    ConfigOption {
        key: "state.backend.rocksdb.compaction.style",
        kind: ValueKind::Enum(&["level", "universal"]),
        default: Some("level"),
        description: "RocksDB compaction: level (fewest files per lookup) or universal (less rewriting of data).",
    },
    ConfigOption {
        key: "state.backend.rocksdb.thread.num",
        kind: ValueKind::PositiveInt,
        default: Some("2"),
        description: "RocksDB background flush and compaction jobs per instance.",
    },
    ConfigOption {
        key: "state.backend.changelog.enabled",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("true"),
        description: "RocksDB: log every write, so that checkpoints between materializations upload the log instead of flushing memtables (Flink's changelog state backend).",
    },
    ConfigOption {
        key: "state.backend.changelog.periodic-materialize.interval",
        kind: ValueKind::Duration,
        default: Some("10min"),
        description: "RocksDB changelog: make a native RocksDB checkpoint (a materialization) at least this often.",
    },
    ConfigOption {
        key: "state.backend.changelog.materialize-after-size",
        kind: ValueKind::MemorySize,
        default: Some("256mb"),
        description: "RocksDB changelog: materialize once the log since the last materialization is this large (bounds restore replay and the log's memory).",
    },
    ConfigOption {
        key: "pipeline.auto-watermark-interval",
        kind: ValueKind::Duration,
        default: Some("200ms"),
        description: "How often watermark generators emit a watermark.",
    },
    ConfigOption {
        key: "state.savepoints.dir",
        kind: ValueKind::Text,
        default: None,
        description: "Where savepoints go by default (also --savepoint-dir); when set, savepoints are written only below it.",
    },
    ConfigOption {
        key: "execution.stop-with-savepoint.after",
        kind: ValueKind::Duration,
        default: None,
        description: "Local runner: take a savepoint into state.savepoints.dir after this time and stop the job (also --stop-with-savepoint-after).",
    },
    ConfigOption {
        key: "execution.savepoint.path",
        kind: ValueKind::Text,
        default: None,
        description: "Start from this savepoint or retained checkpoint (also -s PATH).",
    },
    ConfigOption {
        key: "execution.checkpointing.resume-from-latest",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("true"),
        description: "Whether a job without execution.savepoint.path resumes from the newest complete checkpoint of its own in state.checkpoints.dir. A highly available JobManager sets false and names the checkpoint etcd recorded instead: an unrecorded checkpoint must never be resumed (its transactions would be committed, and a later resume from the recorded one would repeat them).",
    },
    ConfigOption {
        key: "execution.savepoint.ignore-unclaimed-state",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("false"),
        description: "Start even if some state of the savepoint maps to no operator (also --allow-non-restored-state).",
    },
    ConfigOption {
        key: "restart-strategy.type",
        kind: ValueKind::Enum(&["none", "fixed-delay", "exponential-delay", "failure-rate"]),
        default: None,
        description: "How a failed job restarts from its latest checkpoint; default: exponential-delay with checkpointing, none without.",
    },
    ConfigOption {
        key: "restart-strategy.fixed-delay.attempts",
        kind: ValueKind::PositiveInt,
        default: Some("1"),
        description: "fixed-delay: restarts before the job fails.",
    },
    ConfigOption {
        key: "restart-strategy.fixed-delay.delay",
        kind: ValueKind::Duration,
        default: Some("1s"),
        description: "fixed-delay: wait before each restart.",
    },
    ConfigOption {
        key: "restart-strategy.exponential-delay.initial-backoff",
        kind: ValueKind::Duration,
        default: Some("1s"),
        description: "exponential-delay: wait before the first restart.",
    },
    ConfigOption {
        key: "restart-strategy.exponential-delay.max-backoff",
        kind: ValueKind::Duration,
        default: Some("1min"),
        description: "exponential-delay: longest wait.",
    },
    ConfigOption {
        key: "restart-strategy.exponential-delay.backoff-multiplier",
        kind: ValueKind::PositiveNumber,
        default: Some("2.0"),
        description: "exponential-delay: factor applied to the wait after each restart.",
    },
    ConfigOption {
        key: "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        kind: ValueKind::PositiveInt,
        default: None,
        description: "exponential-delay: restarts before the job fails; default: unlimited.",
    },
    ConfigOption {
        key: "restart-strategy.failure-rate.max-failures-per-interval",
        kind: ValueKind::PositiveInt,
        default: Some("1"),
        description: "failure-rate: failures tolerated within one interval.",
    },
    ConfigOption {
        key: "restart-strategy.failure-rate.failure-rate-interval",
        kind: ValueKind::Duration,
        default: Some("1min"),
        description: "failure-rate: the interval.",
    },
    ConfigOption {
        key: "restart-strategy.failure-rate.delay",
        kind: ValueKind::Duration,
        default: Some("1s"),
        description: "failure-rate: wait before each restart.",
    },
    ConfigOption {
        key: "jobmanager.rpc.address",
        kind: ValueKind::Text,
        default: Some("127.0.0.1"),
        description: "Cluster: address of the JobManager's RPC endpoint (TaskManagers and job drivers connect here).",
    },
    ConfigOption {
        key: "jobmanager.rpc.port",
        kind: ValueKind::Port,
        default: Some("6123"),
        description: "Cluster: port of the JobManager's RPC endpoint.",
    },
    ConfigOption {
        key: "rest.address",
        kind: ValueKind::Text,
        default: Some("127.0.0.1"),
        description: "Cluster: address the JobManager's REST API and web UI bind to, and the CLI connects to (loopback by default).",
    },
    ConfigOption {
        key: "jobmanager.bind-host",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the address the JobManager's RPC endpoint binds (e.g. 0.0.0.0); default jobmanager.rpc.address, which stays the address others connect to (drivers bind it too).",
    },
    ConfigOption {
        key: "rest.bind-address",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the address the REST API binds (e.g. 0.0.0.0); default rest.address, which stays the address a leading JobManager publishes.",
    },
    ConfigOption {
        key: "rest.port",
        kind: ValueKind::Port,
        default: Some("8081"),
        description: "Cluster: port of the REST API and web UI.",
    },
    ConfigOption {
        key: "rest.token",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: if set, every REST request must carry `Authorization: Bearer <token>` (the CLI: --token-file or SLUICE_REST_TOKEN); required for a non-loopback rest.address. Prefer rest.token-file.",
    },
    ConfigOption {
        key: "security.ssl.internal.enabled",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("false"),
        description: "Cluster: mutual TLS on every RPC and data connection between Sluice processes (needs the three PEM files below; see docs/security.md).",
    },
    ConfigOption {
        key: "security.ssl.internal.cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: this process's certificate chain, a PEM file signed by the cluster CA (scripts/cluster-certs.sh makes one).",
    },
    ConfigOption {
        key: "security.ssl.internal.key",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the private key of security.ssl.internal.cert (PEM, PKCS#8 or SEC1 or PKCS#1).",
    },
    ConfigOption {
        key: "security.ssl.internal.trust-cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the cluster CA's certificate (PEM); peers must present a certificate it signed.",
    },
    ConfigOption {
        key: "security.internal.allow-plaintext-network",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("false"),
        description: "Cluster: without TLS, servers refuse non-loopback bind addresses unless this is true (a network you trust).",
    },
    ConfigOption {
        key: "rest.token-file",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: a file holding the REST token (preferred to rest.token; SLUICE_REST_TOKEN in the environment works too).",
    },
    ConfigOption {
        key: "rest.metrics-token",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: a read-only token that /metrics and /metrics/targets accept besides rest.token (give it to Prometheus).",
    },
    ConfigOption {
        key: "rest.metrics-token-file",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: a file holding rest.metrics-token (or SLUICE_METRICS_TOKEN in the environment).",
    },
    ConfigOption {
        key: "rest.allowed-hosts",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: host names (comma-separated) the REST API answers to besides IP addresses and localhost; other Host headers are refused (DNS rebinding).",
    },
    ConfigOption {
        key: "web.upload.retained",
        kind: ValueKind::PositiveInt,
        default: Some("20"),
        description: "Cluster: uploaded job binaries the JobManager keeps; past this number each upload deletes the oldest one no unfinished job runs from (DELETE /jars/{id} removes one at once).",
    },
    ConfigOption {
        key: "web.submit.enable",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("true"),
        description: "Cluster: whether the REST API accepts uploads and job submissions.",
    },
    ConfigOption {
        key: "web.cancel.enable",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("true"),
        description: "Cluster: whether the REST API accepts cancel and stop requests.",
    },
    ConfigOption {
        key: "security.ssl.rest.enabled",
        kind: ValueKind::Enum(&["true", "false"]),
        default: Some("false"),
        description: "Cluster: HTTPS on the REST port (the CLI then connects with https://HOST:PORT given to -m).",
    },
    ConfigOption {
        key: "security.ssl.rest.cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the REST server's certificate chain (PEM); for the CLI, the client certificate it presents.",
    },
    ConfigOption {
        key: "security.ssl.rest.key",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the private key of security.ssl.rest.cert (PEM).",
    },
    ConfigOption {
        key: "security.ssl.rest.trust-cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: server side, clients must present a certificate of this CA (client authentication); CLI side, the CA the REST server's certificate must chain to.",
    },
    ConfigOption {
        key: "heartbeat.interval",
        kind: ValueKind::Duration,
        default: Some("1s"),
        description: "Cluster: how often TaskManagers send heartbeats.",
    },
    ConfigOption {
        key: "heartbeat.timeout",
        kind: ValueKind::Duration,
        default: Some("10s"),
        description: "Cluster: a TaskManager silent this long is declared lost (a closed connection is noticed at once).",
    },
    ConfigOption {
        key: "cluster.work-dir",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: where processes keep job binaries and logs; default: <temp dir>/sluice-cluster.",
    },
    ConfigOption {
        key: "taskmanager.resource-id",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the TaskManager's id; default: taskmanager-<host>-<pid>.",
    },
    ConfigOption {
        key: "jobmanager.resource-id",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the JobManager's id, published when it leads; default: jobmanager-<rpc address>-<pid>.",
    },
    ConfigOption {
        key: "high-availability.type",
        kind: ValueKind::Enum(&["none", "NONE", "etcd"]),
        default: Some("none"),
        description: "Cluster: JobManager high availability: none (a lost JobManager ends its jobs) or etcd (standby JobManagers take over and resume every job from its latest checkpoint; docs/high-availability.md).",
    },
    ConfigOption {
        key: "high-availability.etcd.endpoints",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: etcd's client URLs, comma-separated (e.g. http://10.0.0.5:2379); JobManagers, TaskManagers and the CLI find the leader there.",
    },
    ConfigOption {
        key: "high-availability.cluster-id",
        kind: ValueKind::Text,
        default: Some("default"),
        description: "Cluster, HA: names this cluster's keys in etcd (/sluice/<id>/...) and its directory in the storage directory.",
    },
    ConfigOption {
        key: "high-availability.storageDir",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: a directory every JobManager host shares; holds job records and binaries (etcd holds only pointers to them).",
    },
    ConfigOption {
        key: "high-availability.etcd.lease-ttl",
        kind: ValueKind::Duration,
        default: Some("3s"),
        description: "Cluster, HA: the leader's lease; a killed leader is replaced after about this long, a leader that cannot renew it steps down after three quarters of it.",
    },
    ConfigOption {
        key: "high-availability.etcd.ssl.trust-cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: PEM file of the CA that signed etcd's server certificate; required for https:// endpoints (which are then the only way Sluice talks to etcd).",
    },
    ConfigOption {
        key: "high-availability.etcd.ssl.cert",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: PEM certificate Sluice presents to etcd (etcd's --client-cert-auth); with high-availability.etcd.ssl.key.",
    },
    ConfigOption {
        key: "high-availability.etcd.ssl.key",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: PEM private key of high-availability.etcd.ssl.cert.",
    },
    ConfigOption {
        key: "high-availability.etcd.ssl.server-name",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster, HA: the name etcd's certificate must carry (default: the endpoint's host).",
    },
    ConfigOption {
        key: "taskmanager.host",
        kind: ValueKind::Text,
        default: Some("127.0.0.1"),
        description: "Cluster: the address of this TaskManager that other hosts reach: the data servers of its job processes are advertised there (and bound there unless taskmanager.bind-host is set).",
    },
    ConfigOption {
        key: "taskmanager.artifacts.retained",
        kind: ValueKind::PositiveInt,
        default: Some("5"),
        description: "Cluster: job binaries a TaskManager keeps in its work directory (the most recently used; others are fetched again when needed).",
    },
    ConfigOption {
        key: "taskmanager.jobs.retained",
        kind: ValueKind::NonNegativeInt,
        default: Some("50"),
        description: "Cluster: directories (logs, output) of ended job processes a TaskManager keeps, newest first; running processes always keep theirs.",
    },
    ConfigOption {
        key: "taskmanager.bind-host",
        kind: ValueKind::Text,
        default: None,
        description: "Cluster: the address the data servers of this TaskManager's job processes bind to, e.g. 0.0.0.0 (default: taskmanager.host); they stay advertised at taskmanager.host.",
    },
    ConfigOption {
        key: "taskmanager.registration.timeout",
        kind: ValueKind::Duration,
        default: Some("5min"),
        description: "Cluster: how long a TaskManager keeps trying to reach the JobManager before it gives up.",
    },
];
