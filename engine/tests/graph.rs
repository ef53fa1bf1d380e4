//! Parallelism precedence and operator chaining, observed in the job graph.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use common::{CollectSink, Counter};
use sluice::graph::Partitioning;
use sluice::{ParameterTool, StreamExecutionEnvironment};

/// Builds source → map → sink and returns the map's vertex parallelism.
fn map_parallelism(env: &StreamExecutionEnvironment, op: Option<u32>) -> u32 {
    let mut mapped = env.add_source(Counter::new(Some(10))).map(|x: u64| x + 1);
    if let Some(p) = op {
        mapped = mapped.set_parallelism(p);
    }
    mapped.add_sink(CollectSink::<u64>::default());
    let graph = env.job_graph("precedence").unwrap();
    graph.vertices().iter().find(|v| v.name.contains("Map")).unwrap().parallelism
}

fn env(args: &[&str]) -> StreamExecutionEnvironment {
    StreamExecutionEnvironment::from_params(&ParameterTool::from_args(args.iter().copied()).unwrap()).unwrap()
}

#[test]
fn operator_parallelism_wins_over_environment() {
    let e = env(&["-p", "4", "-D", "parallelism.default=5"]);
    e.set_parallelism(2);
    assert_eq!(map_parallelism(&e, Some(3)), 3);
}

#[test]
fn environment_parallelism_wins_over_command_line() {
    let e = env(&["-p", "4", "-D", "parallelism.default=5"]);
    e.set_parallelism(2);
    assert_eq!(map_parallelism(&e, None), 2);
}

#[test]
fn command_line_wins_over_config() {
    assert_eq!(map_parallelism(&env(&["-p", "4", "-D", "parallelism.default=5"]), None), 4);
}

#[test]
fn config_wins_over_cores() {
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    let configured = cores + 3;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.yaml");
    std::fs::write(&file, format!("parallelism.default: {configured}\n")).unwrap();
    let e = env(&["--config", file.to_str().unwrap()]);
    assert_eq!(map_parallelism(&e, None), configured);
    // -D overrides the file, and still counts as the configuration level.
    let e = env(&["--config", file.to_str().unwrap(), "-D", "parallelism.default=7"]);
    assert_eq!(map_parallelism(&e, None), 7);
}

#[test]
fn cores_are_the_last_resort() {
    let cores = std::thread::available_parallelism().unwrap().get() as u32;
    assert_eq!(map_parallelism(&env(&[]), None), cores);
}

#[test]
fn forward_chain_is_one_task_and_key_by_splits_it() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    let sink = CollectSink::default();
    env.add_source(Counter::new(Some(1000)))
        .map(|x: u64| (x % 10, 1u64))
        .filter(|t: &(u64, u64)| t.0 != 3)
        .key_by(|t: &(u64, u64)| t.0)
        .sum(|t: &mut (u64, u64)| &mut t.1)
        .add_sink(sink.clone());
    let graph = env.job_graph("chaining").unwrap();
    let names: Vec<&str> = graph.vertices().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["Source: Custom Source -> Map -> Filter", "Keyed Aggregation -> Sink: Custom Sink"]);
    assert_eq!(graph.edges().len(), 1);
    assert_eq!(graph.edges()[0].partitioning, Partitioning::Hash);
    assert_eq!(graph.subtask_count(), 4, "two vertices of two subtasks");

    // The chained job runs and computes running counts: 1..=100 for each of 9 keys.
    env.execute("chaining").unwrap();
    let mut out = sink.take();
    out.sort();
    let expected: Vec<(u64, u64)> = (0..10).filter(|k| *k != 3).flat_map(|k| (1..=100).map(move |n| (k, n))).collect();
    assert_eq!(out, expected);
}

#[test]
fn different_parallelism_or_disabled_chaining_breaks_chains() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.add_source(Counter::new(Some(10)))
        .map(|x: u64| x)
        .set_parallelism(1)
        .filter(|_: &u64| true)
        .add_sink(CollectSink::<u64>::default());
    let graph = env.job_graph("split").unwrap();
    assert_eq!(graph.vertices().len(), 3, "{graph}");
    assert_eq!(graph.edges()[0].partitioning, Partitioning::Rebalance);
    assert_eq!(graph.edges()[1].partitioning, Partitioning::Rebalance);

    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2).disable_operator_chaining();
    env.add_source(Counter::new(Some(10))).map(|x: u64| x).add_sink(CollectSink::<u64>::default());
    let graph = env.job_graph("unchained").unwrap();
    assert_eq!(graph.vertices().len(), 3, "{graph}");
    assert!(graph.edges().iter().all(|e| e.partitioning == Partitioning::Forward));
}

#[test]
fn bad_graphs_are_clear_errors() {
    let env = StreamExecutionEnvironment::new();
    env.set_parallelism(2);
    env.add_source(Counter::new(Some(10)))
        .forward()
        .map(|x: u64| x)
        .set_parallelism(3)
        .add_sink(CollectSink::<u64>::default());
    let e = env.job_graph("bad").err().unwrap().to_string();
    assert!(e.contains("forward partitioning") && e.contains("rebalance()"), "{e}");

    let env = StreamExecutionEnvironment::new();
    env.socket_text_stream("localhost", 1).set_parallelism(2).print();
    let e = env.job_graph("bad").err().unwrap().to_string();
    assert!(e.contains("non-parallel source"), "{e}");

    let env = StreamExecutionEnvironment::new();
    let e = env.job_graph("empty").err().unwrap().to_string();
    assert!(e.contains("no operators"), "{e}");

    let e = StreamExecutionEnvironment::from_params(&ParameterTool::from_args(["-p", "zero"]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(e, "bad value 'zero' for parameter -p: expected a positive integer");
}
