//! Nexmark q1, currency conversion: each bid's price from dollars to euros.
//!
//! ```sql
//! SELECT auction, bidder, 0.908 * price as price, dateTime, extra FROM bid;
//! ```

use serde::{Deserialize, Serialize};
use sluice::DataStream;
use sluice_connectors::nexmark::Event;

/// Euros per dollar, as in the benchmark.
pub const EUROS_PER_DOLLAR: f64 = 0.908;

/// A bid with its price in euros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EuroBid {
    /// The auction bid on.
    pub auction: usize,
    /// Who bid.
    pub bidder: usize,
    /// The price in euros.
    pub price: f64,
    /// Event time, ms since the epoch.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// Every bid of `events`, in euros.
pub fn query(events: &DataStream<Event>) -> DataStream<EuroBid> {
    super::bids(events).map(|b| EuroBid {
        auction: b.auction,
        bidder: b.bidder,
        price: EUROS_PER_DOLLAR * b.price as f64,
        date_time: b.date_time,
        extra: b.extra,
    })
}
