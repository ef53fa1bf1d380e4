//! Nexmark queries in Sluice's DataStream API, one per file, each a
//! function from the stream of [`Event`]s to the query's output stream,
//! with an independent single-threaded [`reference`] of what it must
//! produce. The queries follow the Nexmark benchmark's definitions (as in
//! Flink's Nexmark SQL); [`QUERIES`] lists what is implemented.
//!
//! ```no_run
//! use sluice::StreamExecutionEnvironment;
//! use sluice_connectors::nexmark::NexmarkSource;
//!
//! let env = StreamExecutionEnvironment::new();
//! let events = env.add_source(NexmarkSource::new().with_events(1_000_000));
//! sluice_bench::nexmark::q2::query(&events).print();
//! env.execute("Nexmark q2").unwrap();
//! ```

pub mod q0;
pub mod q1;
pub mod q2;
pub mod reference;

use sluice::{DataStream, Sink};
use sluice_connectors::nexmark::{Bid, Event};

/// The queries implemented, by name.
pub const QUERIES: &[&str] = &["q0", "q1", "q2"];

/// The bids of `events` (every query on bids starts here).
pub fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

/// A sink that drops its records (a benchmark measures the query, not an
/// output; Flink's Nexmark benchmark writes to a blackhole table).
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl<T> Sink<T> for Discard {
    fn write(&mut self, record: T) -> sluice::Result<()> {
        std::hint::black_box(record);
        Ok(())
    }
}

/// Adds query `name` over `events` with its typed output dropped; false
/// for an unknown query.
pub fn discard_output(name: &str, events: &DataStream<Event>) -> bool {
    match name {
        "q0" => drop(q0::query(events).add_sink(Discard)),
        "q1" => drop(q1::query(events).add_sink(Discard)),
        "q2" => drop(q2::query(events).add_sink(Discard)),
        _ => return false,
    }
    true
}

/// Query `name`'s output as one JSON line per record (for checks against
/// [`reference::lines`]); `None` for an unknown query.
pub fn output_lines(name: &str, events: &DataStream<Event>) -> Option<DataStream<String>> {
    let json = |v: serde_json::Result<String>| v.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Some(match name {
        "q0" => q0::query(events).map(move |b| json(serde_json::to_string(&b))),
        "q1" => q1::query(events).map(move |b| json(serde_json::to_string(&b))),
        "q2" => q2::query(events).map(move |r| json(serde_json::to_string(&r))),
        _ => return None,
    })
}
