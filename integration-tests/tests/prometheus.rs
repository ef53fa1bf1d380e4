//! A real Prometheus server scrapes a running job's `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice::config::Configuration;
use sluice::{
    Boundedness, CheckpointId, Collector, Result, RuntimeContext, Sink, Source, SourceStatus,
    StreamExecutionEnvironment,
};
use sluice_integration_tests::ServerProcess;
use sluice_test_support::{free_port, http};
use std::time::{Duration, Instant};

/// An endless, gently paced source.
#[derive(Clone)]
struct Ticks(u64);

impl Source<u64> for Ticks {
    type State = u64;
    fn boundedness(&self) -> Boundedness {
        Boundedness::Unbounded
    }
    fn open(&mut self, _: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn poll_next(&mut self, out: &mut dyn Collector<u64>) -> Result<SourceStatus> {
        for _ in 0..10 {
            self.0 += 1;
            out.collect(self.0)?;
        }
        Ok(SourceStatus::Idle(Duration::from_millis(5)))
    }
    fn snapshot_state(&mut self, _: CheckpointId) -> Result<u64> {
        Ok(self.0)
    }
    fn restore_state(&mut self, s: u64) -> Result<()> {
        self.0 = s;
        Ok(())
    }
}

#[derive(Clone)]
struct Nowhere;

impl Sink<u64> for Nowhere {
    fn write(&mut self, _: u64) -> Result<()> {
        Ok(())
    }
}

#[test]
fn prometheus_scrapes_a_running_job() {
    let mut conf = Configuration::new();
    conf.set("metrics.reporter.prom.port", "0").unwrap();
    let env = StreamExecutionEnvironment::with_config(conf);
    env.set_parallelism(2);
    env.add_source(Ticks(0)).map(|x: u64| x * 2).rebalance().add_sink(Nowhere);
    let client = env.execute_async("scraped job").unwrap();
    let target = client.metrics_address().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let _prometheus = ServerProcess::start("prometheus", &args, Some(&dir.path().join("prometheus.log"))).unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let query = "/api/v1/query?query=sluice_taskmanager_job_task_operator_numRecordsIn%7Boperator_name%3D%22Map%22%7D";
    let started = Instant::now();
    let answer = loop {
        if let Ok(resp) = http::get(api, query).map(|r| r.body) {
            if resp.contains("\"operator_name\":\"Map\"") && resp.contains("\"job_name\":\"scraped job\"") {
                break resp;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("Prometheus never stored the job's metrics; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(answer.contains("\"status\":\"success\""), "{answer}");
    // Both subtasks of the Map reported.
    assert!(answer.contains("\"subtask_index\":\"0\"") && answer.contains("\"subtask_index\":\"1\""), "{answer}");
    let up = http::get(api, "/api/v1/query?query=up%7Bjob%3D%22sluice%22%7D").unwrap().body;
    assert!(up.contains("\"value\":[") && up.contains(",\"1\"]"), "target is up: {up}");

    client.cancel().unwrap();
    assert!(client.wait().is_err(), "canceled");
}
