//! The execution environment: where a job's sources are created, its
//! settings made, and where `execute` turns the recorded dataflow into a job.

use super::datastream::DataStream;
use crate::cluster::{JobClient, JobExecutionResult, MiniCluster, MiniClusterConfig};
use crate::config::Configuration;
use crate::config::RestartStrategy;
use crate::error::{Error, Result};
use crate::faults::Faults;
use crate::graph::job_graph::JobSettings;
use crate::graph::stream_graph::{NodeKind, StreamGraph, StreamNode};
use crate::graph::{JobGraph, ParallelismDefaults};
use crate::metrics::MetricsServer;
use crate::params::{ParamError, ParameterTool};
use crate::record::Data;
use crate::runtime::context::RuntimeMode;
use crate::runtime::erased::{TypedSourceFactory, TypedStream};
use crate::runtime::restore::RestorePlan;
use crate::source::{Boundedness, CollectionSource, SocketTextSource, Source, TextFileSource};
use sluice_checkpoint::coordinator::CheckpointConfig;
use sluice_checkpoint::metadata::JobIdentity;
use sluice_checkpoint::state::{ChangelogConfig, RocksDbTuning, StateBackendConfig};
use sluice_checkpoint::{storage, CheckpointKind, CheckpointingMode};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The `state.backend.rocksdb.*` tuning keys (validated against their
/// kinds and allowed words already; the defaults come from the options).
fn rocksdb_tuning(conf: &Configuration) -> Result<RocksDbTuning> {
    let d = RocksDbTuning::default();
    let bytes = |key: &str, default: usize| -> Result<usize> {
        Ok(conf.get_memory_size(key)?.map_or(default, |b| usize::try_from(b).unwrap_or(usize::MAX)))
    };
    let count = |key: &str, default: usize| -> Result<usize> { Ok(conf.get_u32(key)?.map_or(default, |n| n as usize)) };
    Ok(RocksDbTuning {
        block_cache_bytes: bytes("state.backend.rocksdb.block.cache-size", d.block_cache_bytes)?,
        block_bytes: bytes("state.backend.rocksdb.block.blocksize", d.block_bytes)?,
        cache_index_and_filters: conf
            .get_bool("state.backend.rocksdb.block.cache-index-and-filter-blocks")?
            .unwrap_or(d.cache_index_and_filters),
        write_buffer_bytes: bytes("state.backend.rocksdb.writebuffer.size", d.write_buffer_bytes)?,
        write_buffer_count: count("state.backend.rocksdb.writebuffer.count", d.write_buffer_count)?,
        compaction: conf
            .get_str("state.backend.rocksdb.compaction.style")?
            .and_then(|s| s.parse().ok())
            .unwrap_or(d.compaction),
        background_jobs: count("state.backend.rocksdb.thread.num", d.background_jobs)?,
    })
}

/// The `state.backend.changelog.*` keys (validated already).
fn changelog_config(conf: &Configuration) -> Result<ChangelogConfig> {
    let d = ChangelogConfig::default();
    Ok(ChangelogConfig {
        enabled: conf.get_bool("state.backend.changelog.enabled")?.unwrap_or(d.enabled),
        materialize_interval: conf
            .get_duration("state.backend.changelog.periodic-materialize.interval")?
            .unwrap_or(d.materialize_interval),
        materialize_after_bytes: conf
            .get_memory_size("state.backend.changelog.materialize-after-size")?
            .unwrap_or(d.materialize_after_bytes),
    })
}

/// `execution.checkpointing.*`, if an interval is set.
fn checkpoint_config(conf: &Configuration) -> Result<Option<CheckpointConfig>> {
    let Some(interval) = conf.get_duration("execution.checkpointing.interval")? else {
        return Ok(None);
    };
    let mode = match conf.get_str("execution.checkpointing.mode")?.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("AT_LEAST_ONCE") => CheckpointingMode::AtLeastOnce,
        _ => CheckpointingMode::ExactlyOnce,
    };
    Ok(Some(CheckpointConfig {
        interval,
        mode,
        timeout: conf.get_duration("execution.checkpointing.timeout")?.unwrap_or(Duration::from_secs(600)),
        min_pause: conf.get_duration("execution.checkpointing.min-pause")?.unwrap_or_default(),
        max_concurrent: conf.get_u32("execution.checkpointing.max-concurrent-checkpoints")?.unwrap_or(1) as usize,
        tolerable_failures: conf.get_u32("execution.checkpointing.tolerable-failed-checkpoints")?.unwrap_or(0),
    }))
}

/// What the job restores: the savepoint of `execution.savepoint.path`, or
/// else (unless `execution.checkpointing.resume-from-latest` is false) the
/// latest completed checkpoint of this job (`job`: the same name and
/// operators; in a cluster also the same job id) in
/// `state.checkpoints.dir`. Checkpoints of other jobs in that directory are
/// named on stderr and never restored.
fn restore_plan(conf: &Configuration, job: &JobIdentity) -> Result<Option<RestorePlan>> {
    if let Some(path) = conf.get_str("execution.savepoint.path")? {
        sluice_checkpoint::names::check_path_text(&path)?;
        let (metadata, dir) = storage::read_metadata(Path::new(&path))?;
        storage::verify_files(&metadata, &dir)?;
        return Ok(Some(RestorePlan { metadata, dir }));
    }
    let Some(root) = conf.get_str("state.checkpoints.dir")? else { return Ok(None) };
    if conf.get_bool("execution.checkpointing.resume-from-latest")? == Some(false) {
        return Ok(None);
    }
    if !conf.is_set("execution.checkpointing.interval") {
        return Ok(None);
    }
    // A job submitted to a cluster inherits the cluster's directory, which
    // holds every job's checkpoints: it resumes only its own job id's.
    let mut job = job.clone();
    if crate::cluster::remote::job_process::role()?.is_some() {
        job.job_id = std::env::var(crate::cluster::remote::job_process::JOB_ID_VAR).ok();
    }
    let job = &job;
    match storage::find_latest(Path::new(&root), job) {
        Ok(latest) => {
            for (dir, whose) in &latest.foreign {
                eprintln!(
                    "Not resuming from checkpoint {} of another job: {whose} (this is job '{}')",
                    dir.display(),
                    job.name
                );
            }
            for (dir, why) in &latest.skipped {
                eprintln!("Skipping checkpoint {}: {why}; falling back to an older one", dir.display());
            }
            Ok(latest.restore.map(|(metadata, dir)| RestorePlan { metadata, dir }))
        }
        Err(sluice_checkpoint::Error::NothingToRestore(_)) => Err(Error::InvalidGraph(format!(
            "every checkpoint under '{root}' is damaged, so the job cannot resume; \
             move the directory away to start from scratch (input may then be processed again)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// How keyed aggregations emit results (Flink's `RuntimeExecutionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeExecutionMode {
    /// Running results as records arrive (default).
    Streaming,
    /// One final result per key at the end of input; needs bounded sources.
    Batch,
    /// Batch if every source is bounded, streaming otherwise.
    Automatic,
}

pub(crate) struct EnvState {
    pub(crate) graph: StreamGraph,
    pub(crate) errors: Vec<String>,
    parallelism: Option<u32>,
    command_line_parallelism: Option<u32>,
    config: Configuration,
    mode: Option<RuntimeExecutionMode>,
    chaining: bool,
    faults: Option<Faults>,
    /// Tagged streams of operators with side outputs, by (operator node,
    /// tag id); each holds a `DataStream<Tagged<O, S>>`.
    pub(crate) side_outputs: HashMap<(usize, String), Box<dyn Any>>,
    /// By operator node: the tagged stream of a process function, whose
    /// side outputs are read by tag id.
    pub(crate) process_side_outputs: HashMap<usize, Box<dyn Any>>,
}

/// The context a job is built in (Flink's `StreamExecutionEnvironment`).
///
/// ```
/// use sluice::{ParameterTool, StreamExecutionEnvironment};
/// let params = ParameterTool::from_args(["-p", "2"]).unwrap();
/// let env = StreamExecutionEnvironment::from_params(&params).unwrap();
/// env.from_collection(vec![1i64, 2, 3]).map(|x| x * 10).print();
/// env.execute("doc example").unwrap();
/// ```
#[derive(Clone)]
pub struct StreamExecutionEnvironment {
    pub(crate) state: Rc<RefCell<EnvState>>,
}

impl Default for StreamExecutionEnvironment {
    fn default() -> Self {
        Self::with_config(Configuration::new())
    }
}

impl StreamExecutionEnvironment {
    /// An environment with the default configuration (no file is read).
    pub fn new() -> Self {
        Self::default()
    }

    /// An environment with the given configuration.
    pub fn with_config(config: Configuration) -> Self {
        StreamExecutionEnvironment {
            state: Rc::new(RefCell::new(EnvState {
                graph: StreamGraph::default(),
                errors: Vec::new(),
                side_outputs: HashMap::new(),
                process_side_outputs: HashMap::new(),
                parallelism: None,
                command_line_parallelism: None,
                config,
                mode: None,
                chaining: true,
                faults: None,
            })),
        }
    }

    /// An environment configured from the command line, the way a job's
    /// `main` starts: the configuration file found by the documented rule
    /// (`--config PATH`, `$SLUICE_CONF_DIR/sluice.yaml`, `./sluice.yaml`),
    /// `-D key=value` overrides, `-p N` as the submission parallelism, and
    /// `--metrics-port PORT`.
    pub fn from_params(params: &ParameterTool) -> Result<Self> {
        let mut config = Configuration::discover(params.get("config").map(Path::new))?;
        for assignment in params.dynamic_properties() {
            config.set_dynamic(assignment)?;
        }
        for (flag, key) in [
            ("checkpoint-dir", "state.checkpoints.dir"),
            ("checkpoint-interval", "execution.checkpointing.interval"),
            ("s", "execution.savepoint.path"),
            ("savepoint-dir", "state.savepoints.dir"),
            ("stop-with-savepoint-after", "execution.stop-with-savepoint.after"),
        ] {
            if let Some(v) = params.get(flag) {
                config.set(key, v).map_err(|_| ParamError::Malformed {
                    key: flag.into(),
                    value: v.into(),
                    expected: if flag.ends_with("interval") || flag.ends_with("after") {
                        "a duration such as 500ms or 1s"
                    } else {
                        "a path"
                    }
                    .into(),
                })?;
            }
        }
        if params.has("allow-non-restored-state") {
            config.set("execution.savepoint.ignore-unclaimed-state", "true")?;
        }
        if let Some(port) = params.get("metrics-port") {
            port.parse::<u16>().map_err(|_| ParamError::Malformed {
                key: "metrics-port".into(),
                value: port.into(),
                expected: "a port number (0-65535)".into(),
            })?;
            config.set("metrics.reporter.prom.port", port)?;
        }
        let env = Self::with_config(config);
        for key in ["p", "parallelism"] {
            if let Some(v) = params.get(key) {
                let p = v.parse::<u32>().ok().filter(|p| *p >= 1).ok_or_else(|| ParamError::Malformed {
                    key: key.into(),
                    value: v.into(),
                    expected: "a positive integer".into(),
                })?;
                env.state.borrow_mut().command_line_parallelism = Some(p);
            }
        }
        Ok(env)
    }

    /// Sets the default parallelism of this job's operators (level 2 of 5).
    pub fn set_parallelism(&self, parallelism: u32) -> &Self {
        if parallelism == 0 {
            self.state
                .borrow_mut()
                .errors
                .push("set_parallelism(0) on the environment: parallelism must be at least 1".into());
        }
        self.state.borrow_mut().parallelism = Some(parallelism);
        self
    }

    /// The parallelism `-p` gave, as if from the command line (level 3 of 5).
    pub fn set_command_line_parallelism(&self, parallelism: u32) -> &Self {
        self.state.borrow_mut().command_line_parallelism = Some(parallelism);
        self
    }

    /// Streaming, batch or automatic (overrides `execution.runtime-mode`).
    pub fn set_runtime_mode(&self, mode: RuntimeExecutionMode) -> &Self {
        self.state.borrow_mut().mode = Some(mode);
        self
    }

    /// Takes a checkpoint every `interval` (`execution.checkpointing.interval`).
    pub fn enable_checkpointing(&self, interval: Duration) -> Result<&Self> {
        let ms = format!("{}ms", interval.as_millis().max(1));
        self.state.borrow_mut().config.set("execution.checkpointing.interval", &ms)?;
        Ok(self)
    }

    /// Sets any configuration key, checked like the configuration file.
    pub fn set_config(&self, key: &str, value: &str) -> Result<&Self> {
        self.state.borrow_mut().config.set(key, value)?;
        Ok(self)
    }

    /// Injects faults (see [`crate::faults`]) instead of reading `SLUICE_FAULTS`.
    pub fn set_faults(&self, faults: Faults) -> &Self {
        self.state.borrow_mut().faults = Some(faults);
        self
    }

    /// Turns operator chaining off for the whole job.
    pub fn disable_operator_chaining(&self) -> &Self {
        self.state.borrow_mut().chaining = false;
        self
    }

    /// A copy of the effective configuration.
    pub fn config(&self) -> Configuration {
        self.state.borrow().config.clone()
    }

    /// A bounded, non-parallel source over `data` (Flink's `fromCollection`).
    pub fn from_collection<T: Data + Sync>(&self, data: Vec<T>) -> DataStream<T> {
        self.add_source_named(CollectionSource::new(data), "Collection Source").set_parallelism(1)
    }

    /// The lines of a text file, read in parallel (Flink's `readTextFile`).
    pub fn read_text_file(&self, path: impl Into<PathBuf>) -> DataStream<String> {
        let path = path.into();
        let name = format!("Text File Source ({})", path.display());
        self.add_source_named(TextFileSource::new(path), &name)
    }

    /// The lines sent by a TCP server (Flink's `socketTextStream`).
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.add_source_named(SocketTextSource::new(host, port), "Socket Stream")
    }

    /// Any [`Source`]; each subtask runs a clone of `source`.
    pub fn add_source<T: Data, S: Source<T> + Clone>(&self, source: S) -> DataStream<T> {
        self.add_source_named(source, "Custom Source")
    }

    fn add_source_named<T: Data, S: Source<T> + Clone>(&self, source: S, name: &str) -> DataStream<T> {
        let bounded = source.boundedness() == Boundedness::Bounded;
        let parallel = source.is_parallel();
        let node = StreamNode {
            name: format!("Source: {name}"),
            uid: None,
            parallelism: None,
            kind: NodeKind::Source { factory: TypedSourceFactory::arc(source), bounded, parallel },
            out_type: TypedStream::<T>::arc(),
            chain_head: false,
            keyed: false,
            union_state: false,
            parallelism_of: None,
        };
        let id = {
            let mut st = self.state.borrow_mut();
            st.graph.nodes.push(node);
            st.graph.nodes.len() - 1
        };
        DataStream::from_node(self.clone(), id)
    }

    fn parallelism_defaults(&self) -> Result<ParallelismDefaults> {
        let st = self.state.borrow();
        Ok(ParallelismDefaults {
            environment: st.parallelism,
            command_line: st.command_line_parallelism,
            config: st.config.get_u32("parallelism.default")?,
            cores: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
        })
    }

    /// Resolves parallelism and chaining: the job graph `execute` would run.
    pub fn job_graph(&self, job_name: &str) -> Result<JobGraph> {
        let defaults = self.parallelism_defaults()?;
        let st = self.state.borrow();
        if let Some(e) = st.errors.first() {
            return Err(Error::InvalidGraph(e.clone()));
        }
        let conf = &st.config;
        let mode_text = conf.get_str("execution.runtime-mode")?.unwrap_or_default().to_ascii_uppercase();
        let mode = st.mode.unwrap_or(match mode_text.as_str() {
            "BATCH" => RuntimeExecutionMode::Batch,
            "AUTOMATIC" => RuntimeExecutionMode::Automatic,
            _ => RuntimeExecutionMode::Streaming,
        });
        let all_bounded = st.graph.nodes.iter().all(|n| !matches!(n.kind, NodeKind::Source { bounded: false, .. }));
        let mode = match mode {
            RuntimeExecutionMode::Streaming => RuntimeMode::Streaming,
            RuntimeExecutionMode::Batch => RuntimeMode::Batch,
            RuntimeExecutionMode::Automatic if all_bounded => RuntimeMode::Batch,
            RuntimeExecutionMode::Automatic => RuntimeMode::Streaming,
        };
        let max_parallelism = conf.get_u32("pipeline.max-parallelism")?.unwrap_or(128);
        sluice_checkpoint::key_group::validate(max_parallelism, 1)?;
        let settings = JobSettings {
            max_parallelism,
            mode,
            batch_size: conf.get_u32("taskmanager.network.batch-size")?.unwrap_or(1024) as usize,
            channel_capacity: conf.get_u32("taskmanager.network.channel-capacity")?.unwrap_or(4) as usize,
            buffer_timeout: conf.get_duration("execution.buffer-timeout")?.unwrap_or_default(),
            slot_request_timeout: conf.get_duration("slot.request.timeout")?.unwrap_or_default(),
            checkpointing: checkpoint_config(conf)?,
            checkpoint_root: conf
                .get_str("state.checkpoints.dir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("sluice-checkpoints")),
            savepoints_dir: conf.get_str("state.savepoints.dir")?.map(PathBuf::from),
            retained: conf.get_u32("state.checkpoints.num-retained")?.unwrap_or(1) as usize,
            state_backend: StateBackendConfig {
                // Validated against the option's allowed words already.
                kind: conf.get_str("state.backend")?.unwrap_or_default().parse().unwrap_or_default(),
                local_dir: conf.get_str("state.backend.rocksdb.localdir")?.map(PathBuf::from),
                cache_entries: conf.get_u32("state.backend.rocksdb.cache-entries")?.unwrap_or(100_000) as usize,
                rocksdb: rocksdb_tuning(conf)?,
                changelog: changelog_config(conf)?,
            },
            watermark_interval: conf
                .get_duration("pipeline.auto-watermark-interval")?
                .unwrap_or(Duration::from_millis(200)),
            restart: RestartStrategy::from_config(conf, conf.is_set("execution.checkpointing.interval"))?,
            restore: None,
            faults: match &st.faults {
                Some(f) => f.clone(),
                None => Faults::from_env()?,
            },
        };
        let mut graph = JobGraph::build(job_name, st.graph.clone(), defaults, st.chaining, settings)?;
        if let Some(plan) = restore_plan(conf, &graph.identity())? {
            let allow = conf.get_bool("execution.savepoint.ignore-unclaimed-state")?.unwrap_or(false);
            plan.check_compatible(|id| graph.operator(id).is_some(), graph.settings.max_parallelism, allow)?;
            graph.settings.restore = Some(Arc::new(plan));
        }
        Ok(graph)
    }

    /// Runs the job on a local mini cluster and waits for it to end.
    ///
    /// With `execution.stop-with-savepoint.after` (`--stop-with-savepoint-after 10s`)
    /// the local runner takes a savepoint into `state.savepoints.dir`
    /// (`--savepoint-dir DIR`) after that time, prints its path and stops
    /// the job; start it again with `-s PATH` to continue from there.
    pub fn execute(&self, job_name: &str) -> Result<JobExecutionResult> {
        if let Some(role) = crate::cluster::remote::job_process::role()? {
            return self.execute_in_cluster(role, job_name);
        }
        let conf = self.config();
        let Some(after) = conf.get_duration("execution.stop-with-savepoint.after")? else {
            return self.execute_async(job_name)?.wait();
        };
        let dir = conf.get_str("state.savepoints.dir")?.ok_or_else(|| {
            Error::Config(crate::config::ConfigError::BadValue {
                key: "state.savepoints.dir".into(),
                value: String::new(),
                expected: "a directory for the savepoint (--savepoint-dir DIR) with --stop-with-savepoint-after".into(),
            })
        })?;
        let client = self.execute_async(job_name)?;
        let started = std::time::Instant::now();
        while started.elapsed() < after {
            if client.details()?.status.is_terminal() {
                return client.wait();
            }
            std::thread::sleep(Duration::from_millis(20).min(after));
        }
        let path = client.trigger_savepoint(PathBuf::from(dir))?;
        eprintln!("Savepoint stored in {} ; job stopped (resume with -s {})", path.display(), path.display());
        let (job_id, job_name) = (client.job_id(), job_name.to_string());
        client.cancel()?;
        match client.wait() {
            Err(Error::JobCanceled(_)) => {
                Ok(JobExecutionResult { job_id, job_name, net_runtime: started.elapsed(), restarts: 0 })
            }
            other => other,
        }
    }

    /// The job binary was started by a cluster (see
    /// [`crate::cluster::remote`]): apply what the cluster passes, build the
    /// same graph as every other process of the job, and play the role.
    fn execute_in_cluster(
        &self,
        role: crate::cluster::remote::job_process::Role,
        job_name: &str,
    ) -> Result<JobExecutionResult> {
        use crate::cluster::remote::job_process::{cluster_overrides, run_driver, run_task_process, Role};
        for (key, value) in cluster_overrides() {
            if key == "parallelism.client" {
                let p = value.parse::<u32>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    crate::error::RpcError::ProcessEnvironment {
                        name: crate::cluster::remote::job_process::CONF_VAR.into(),
                        problem: format!("parallelism.client={value} is not a parallelism of at least 1"),
                    }
                })?;
                self.state.borrow_mut().command_line_parallelism = Some(p);
            } else {
                self.state.borrow_mut().config.set(&key, &value)?;
            }
        }
        let graph = self.job_graph(job_name)?;
        match role {
            Role::Driver => {
                tracing::info!("Job graph:\n{graph}");
                run_driver(graph)
            }
            Role::Task => run_task_process(graph),
        }
    }

    /// Starts the job on a local mini cluster and returns at once; the
    /// returned client can query, cancel and wait for it, and owns the mini
    /// cluster (and the metrics endpoint) until dropped.
    pub fn execute_async(&self, job_name: &str) -> Result<JobClient> {
        let graph = self.job_graph(job_name)?;
        let conf = self.config();
        let metrics = match conf.get_port_range("metrics.reporter.prom.port")? {
            Some(ports) => {
                let host = conf.get_str("metrics.reporter.prom.host")?.unwrap_or_else(|| "127.0.0.1".into());
                Some(MetricsServer::start_in_range(&host, ports)?)
            }
            None => None,
        };
        let task_managers = conf.get_u32("local.number-taskmanager")?.unwrap_or(1).max(1);
        let slots = match conf.get_u32("taskmanager.numberOfTaskSlots")? {
            Some(s) => s,
            None => graph.required_slots().div_ceil(task_managers),
        };
        tracing::info!("Job graph:\n{graph}");
        if let Some(plan) = &graph.settings.restore {
            eprintln!(
                "Restoring job '{}' from {} {} ({})",
                job_name,
                match plan.metadata.kind {
                    CheckpointKind::Savepoint => "savepoint",
                    CheckpointKind::Checkpoint => "checkpoint",
                },
                plan.metadata.checkpoint_id,
                plan.dir.display()
            );
        }
        let cluster = MiniCluster::start(MiniClusterConfig { task_managers, slots_per_task_manager: slots })?;
        let client = cluster.submit(graph)?.owning(cluster);
        tracing::info!("Job has been submitted with JobID {}", client.job_id());
        Ok(client.with_metrics(metrics))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sluice_checkpoint::state::CompactionStyle;

    #[test]
    fn rocksdb_tuning_keys_reach_the_backend_config() {
        let conf = Configuration::new();
        assert_eq!(rocksdb_tuning(&conf).unwrap(), RocksDbTuning::default());
        let mut conf = Configuration::new();
        conf.set("state.backend.rocksdb.writebuffer.size", "128mb").unwrap();
        conf.set("state.backend.rocksdb.writebuffer.count", "4").unwrap();
        conf.set("state.backend.rocksdb.compaction.style", "universal").unwrap();
        conf.set("state.backend.rocksdb.thread.num", "1").unwrap();
        conf.set("state.backend.rocksdb.block.cache-size", "64mb").unwrap();
        conf.set("state.backend.rocksdb.block.blocksize", "16kb").unwrap();
        assert!(!rocksdb_tuning(&conf).unwrap().cache_index_and_filters);
        conf.set("state.backend.rocksdb.block.cache-index-and-filter-blocks", "true").unwrap();
        let t = rocksdb_tuning(&conf).unwrap();
        assert_eq!(t.block_bytes, 16 << 10);
        assert!(t.cache_index_and_filters);
        assert_eq!(t.write_buffer_bytes, 128 << 20);
        assert_eq!(t.write_buffer_count, 4);
        assert_eq!(t.compaction, CompactionStyle::Universal);
        assert_eq!(t.background_jobs, 1);
        assert_eq!(t.block_cache_bytes, 64 << 20);
        let e = conf.set("state.backend.rocksdb.compaction.style", "fifo").unwrap_err().to_string();
        assert!(e.contains("state.backend.rocksdb.compaction.style") && e.contains("universal"), "{e}");
    }

    #[test]
    fn changelog_keys_reach_the_backend_config() {
        assert_eq!(changelog_config(&Configuration::new()).unwrap(), ChangelogConfig::default());
        let mut conf = Configuration::new();
        conf.set("state.backend.changelog.enabled", "false").unwrap();
        conf.set("state.backend.changelog.periodic-materialize.interval", "30s").unwrap();
        conf.set("state.backend.changelog.materialize-after-size", "16mb").unwrap();
        let c = changelog_config(&conf).unwrap();
        assert!(!c.enabled);
        assert_eq!(c.materialize_interval, Duration::from_secs(30));
        assert_eq!(c.materialize_after_bytes, 16 << 20);
        let e = conf.set("state.backend.changelog.enabled", "yes").unwrap_err().to_string();
        assert!(e.contains("state.backend.changelog.enabled") && e.contains("false"), "{e}");
    }
}
