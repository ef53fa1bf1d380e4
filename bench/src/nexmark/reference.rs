//! What each query must produce, computed without the engine: one loop
//! over the generator's events in order, written apart from the queries
//! (it shares only the event types), so that a query's output can be
//! checked against it.

use sluice_connectors::nexmark::Event;

/// Query `name`'s output for `events`, one JSON line per record, sorted;
/// `None` for a query without a reference.
pub fn lines(name: &str, events: impl Iterator<Item = Event>) -> Option<Vec<String>> {
    let bids = events.filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    });
    let mut out: Vec<String> = match name {
        "q0" => bids.map(|b| serde_json::to_string(&b).unwrap_or_default()).collect(),
        "q1" => bids
            .map(|b| {
                let price = serde_json::to_string(&(0.908 * b.price as f64)).unwrap_or_default();
                let extra = serde_json::to_string(&b.extra).unwrap_or_default();
                format!(
                    "{{\"auction\":{},\"bidder\":{},\"price\":{price},\"date_time\":{},\"extra\":{extra}}}",
                    b.auction, b.bidder, b.date_time
                )
            })
            .collect(),
        "q2" => bids.filter(|b| b.auction % 123 == 0).map(|b| format!("[{},{}]", b.auction, b.price)).collect(),
        _ => return None,
    };
    out.sort();
    Some(out)
}
