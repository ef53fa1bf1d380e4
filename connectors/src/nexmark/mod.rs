//! The Nexmark benchmark's events (an online auction: persons, auctions,
//! bids) as a parallel, resumable source.
//!
//! Events come from the `nexmark` crate's generator, a port of the Nexmark
//! project's generator that Flink's Nexmark benchmark uses: 1 person : 3
//! auctions : 46 bids, its id assignment (hot sellers, auctions and
//! bidders), event times advancing with the configured rate, out-of-order
//! groups. An event is a function of its number and of the configuration,
//! whose base time is fixed here (not the wall clock), so a run is the same
//! whatever the parallelism: subtask *i* of *p* generates the events *i*,
//! *i + p*, ...; the position saved in checkpoints is the next event number.
//!
//! ```
//! use sluice_connectors::nexmark::{Event, NexmarkSource};
//!
//! let source = NexmarkSource::new().with_events(1_000_000).with_rate(100_000.0).unwrap();
//! // env.add_source(source) yields Event::Person / Event::Auction / Event::Bid.
//! # let _ = source;
//! ```

mod source;

pub use ::nexmark::event::{Auction, Bid, Event, Person};
pub use source::{NexmarkSource, DEFAULT_BASE_TIME_MS};
