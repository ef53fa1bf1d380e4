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
        let (name, tag) = kafka_image();
        let port = free_port().map_err(io("choosing a port for the Kafka container"))?;
        let container = GenericImage::new(name.clone(), tag.clone())
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_mapped_port(port, 9092.tcp())
            .with_env_var("KAFKA_PORT", "9092")
            .with_env_var("KAFKA_ADVERTISED_HOST", "127.0.0.1")
            .with_env_var("KAFKA_ADVERTISED_PORT", port.to_string())
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .map_err(|e| Error::Service {
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
}
