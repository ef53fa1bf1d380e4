//! Nexmark q2, selection: the bids on a few auctions (those whose id is a
//! multiple of 123).
//!
//! ```sql
//! SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
//! ```

use sluice::DataStream;
use sluice_connectors::nexmark::Event;

/// `(auction, price)` of the bids of `events` on auctions `123 k`.
pub fn query(events: &DataStream<Event>) -> DataStream<(usize, usize)> {
    super::bids(events).flat_map(|b| (b.auction % 123 == 0).then_some((b.auction, b.price)))
}
