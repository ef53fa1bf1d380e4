//! Kafka for tests: the local broker of `scripts/kafka-local.sh`, or a
//! broker in a container started through `testcontainers`.
//!
//! The container maps its listener to a free port on 127.0.0.1 chosen before
//! start, and advertises exactly that address, so clients on the host reach
//! the broker the same way they reach the local one. The container is
//! removed when the [`KafkaContainer`] drops.

use crate::images::kafka_image;
use crate::{io, Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use sluice_test_support::free_port;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// The bootstrap address of the local broker: `SLUICE_KAFKA_BOOTSTRAP` or
/// `127.0.0.1:9092` (where `scripts/kafka-local.sh start` puts it).
pub fn local_bootstrap() -> String {
    std::env::var("SLUICE_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Checks that something listens at `bootstrap`; the error says how to start
/// the local broker.
pub fn require_listening(bootstrap: &str) -> Result<()> {
    let addr: SocketAddr = bootstrap.parse().map_err(|_| Error::Service {
        what: format!("Kafka bootstrap address '{bootstrap}'"),
        message: "not an IP:port".into(),
    })?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| Error::Service {
        what: format!("Kafka broker at {bootstrap}"),
        message: format!("{e}; start it with `scripts/kafka-local.sh start`"),
    })?;
    Ok(())
}

/// Creates `topics` with `partitions` partitions each (replication 1),
/// retrying for up to two minutes: on a loaded 2-core machine a broker
/// container can miss an admin request's deadline while other tests' jobs
/// keep it busy. A topic that already exists (left by an earlier attempt
/// whose reply was lost) counts as created.
pub fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) -> Result<()> {
    let service =
        |message: String| Error::Service { what: format!("creating Kafka topics {topics:?} at {bootstrap}"), message };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| service(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io { context: "starting a runtime for the Kafka admin client".into(), source })?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .operation_timeout(Some(Duration::from_secs(30)));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let failure = match rt.block_on(admin.create_topics(&new, &options)) {
            Ok(results) => results
                .into_iter()
                .filter_map(|r| match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                    Err((topic, code)) => Some(format!("{topic}: {code}")),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => e.to_string(),
        };
        if failure.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(service(format!("{failure} (still failing after 2 minutes of retries)")));
        }
        eprintln!("creating Kafka topics {topics:?} failed ({failure}); retrying");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A single-node Kafka broker (KRaft) in a container.
pub struct KafkaContainer {
    container: Container<GenericImage>,
    bootstrap: String,
}

impl KafkaContainer {
    /// Starts the broker and waits until it reports itself started.
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra environment variables of the
    /// image's entrypoint, e.g. `KAFKA_FORMAT_ARGS` to format a 4.x cluster
    /// at `transaction.version=1`.
    pub fn start_with(env: &[(&str, &str)]) -> Result<Self> {
        let (name, tag) = kafka_image();
        let port = free_port().map_err(io("choosing a port for the Kafka container"))?;
        let mut image = GenericImage::new(name.clone(), tag.clone())
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_mapped_port(port, 9092.tcp())
            .with_env_var("KAFKA_PORT", "9092")
            .with_env_var("KAFKA_ADVERTISED_HOST", "127.0.0.1")
            .with_env_var("KAFKA_ADVERTISED_PORT", port.to_string())
            .with_startup_timeout(Duration::from_secs(120));
        for (k, v) in env {
            image = image.with_env_var(*k, *v);
        }
        let container = image.start().map_err(|e| Error::Service {
            what: format!("Kafka container {name}:{tag}"),
            message: format!("{e}; build the image with `scripts/docker-images.sh`"),
        })?;
        Ok(KafkaContainer { container, bootstrap: format!("127.0.0.1:{port}") })
    }

    /// The broker's bootstrap address on the host.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// The Kafka version the container runs (`KAFKA_VERSION` of its image).
    pub fn version(&self) -> Result<String> {
        self.shell("printf '%s' \"$KAFKA_VERSION\"")
    }

    /// Runs one of Kafka's console tools inside the container
    /// (`kafka_tool NAME` of `scripts/lib/kafka-install.sh`) and returns its
    /// standard output. `args` must name the cluster: the broker's listener
    /// advertises the host's mapped port, which a client inside the container
    /// cannot reach, so admin tools go through the controller with
    /// `--bootstrap-controller` and [`Self::INNER_CONTROLLER`], e.g.
    /// `tool("features", &["--bootstrap-controller", KafkaContainer::INNER_CONTROLLER, "describe"])`.
    pub fn tool(&self, name: &str, args: &[&str]) -> Result<String> {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        self.shell(&format!(
            ". /opt/sluice/lib/common.sh; . /opt/sluice/lib/kafka-install.sh; kafka_tool {name} {}",
            quoted.join(" ")
        ))
    }

    /// The KRaft controller's address as seen inside the container.
    pub const INNER_CONTROLLER: &'static str = "127.0.0.1:9093";

    /// The finalized level of the feature `name` (e.g. `transaction.version`),
    /// from `kafka-features describe`; `None` if the cluster does not list it.
    pub fn feature_level(&self, name: &str) -> Result<Option<u16>> {
        let out = self.tool("features", &["--bootstrap-controller", Self::INNER_CONTROLLER, "describe"])?;
        Ok(parse_feature_level(&out, name))
    }

    /// Sets the finalized level of feature `name` with `kafka-features
    /// upgrade` (e.g. `transaction.version` to 2).
    pub fn upgrade_feature(&self, name: &str, level: u16) -> Result<()> {
        let feature = format!("{name}={level}");
        self.tool("features", &["--bootstrap-controller", Self::INNER_CONTROLLER, "upgrade", "--feature", &feature])
            .map(drop)
    }

    fn shell(&self, script: &str) -> Result<String> {
        let out = std::process::Command::new("docker")
            .args(["exec", self.id(), "bash", "-c", script])
            .output()
            .map_err(io("running docker exec"))?;
        if !out.status.success() {
            return Err(Error::Service {
                what: format!("`{script}` in the Kafka container"),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The `FinalizedVersionLevel` of feature `name` in `kafka-features describe`
/// output: one line per feature, `Feature: NAME  SupportedMinVersion: A ...
/// FinalizedVersionLevel: N  Epoch: E`, fields separated by runs of spaces
/// (or tabs, in older versions).
fn parse_feature_level(describe: &str, name: &str) -> Option<u16> {
    describe.lines().find_map(|line| {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.first() != Some(&"Feature:") || tokens.get(1) != Some(&name) {
            return None;
        }
        let at = tokens.iter().position(|t| *t == "FinalizedVersionLevel:")?;
        tokens.get(at + 1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::parse_feature_level;

    #[test]
    fn reads_a_finalized_feature_level() {
        let out = "Feature: metadata.version    SupportedMinVersion: 3.3-IV3   SupportedMaxVersion: 4.4-IV2   FinalizedVersionLevel: 4.4-IV2  Epoch: 9\n\
                   Feature: transaction.version SupportedMinVersion: 0 SupportedMaxVersion: 2 FinalizedVersionLevel: 1 Epoch: 9\n";
        assert_eq!(parse_feature_level(out, "transaction.version"), Some(1));
        assert_eq!(parse_feature_level(out, "transaction"), None);
        assert_eq!(parse_feature_level(out, "group.version"), None);
        let tabs = "Feature: transaction.version\tSupportedMinVersion: 0\tSupportedMaxVersion: 2\tFinalizedVersionLevel: 2\tEpoch: 3";
        assert_eq!(parse_feature_level(tabs, "transaction.version"), Some(2));
    }
}
