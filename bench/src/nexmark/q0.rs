//! Nexmark q0, pass-through: every bid, unchanged. Measures the cost of
//! reading and handing on events.
//!
//! ```sql
//! SELECT auction, bidder, price, dateTime, extra FROM bid;
//! ```

use sluice::DataStream;
use sluice_connectors::nexmark::{Bid, Event};

/// The bids of `events`.
pub fn query(events: &DataStream<Event>) -> DataStream<Bid> {
    super::bids(events)
}
