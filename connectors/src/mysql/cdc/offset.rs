//! Binlog positions, the marks rows are ordered by, and startup modes.
//!
//! A [`BinlogPosition`] is a binlog file and a byte offset in it, as
//! `SHOW MASTER STATUS` reports it. Files are ordered by the number after
//! their last `.` (`mysql-bin.000010` after `mysql-bin.000009`), offsets
//! within a file by value. A [`RowMark`] orders single row changes: the
//! position at the *end* of the rows event that holds the row, then the
//! row's index in that event; a watermark taken with `SHOW MASTER STATUS`
//! is the mark `(file, pos, u32::MAX)`, after every row of the events that
//! end at or before it.

use super::error::CdcError;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// A binlog file and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// The binlog file, e.g. `mysql-bin.000003`.
    pub file: String,
    /// The byte offset in the file.
    pub pos: u64,
}

/// The sequence number of a binlog file: the digits after its last `.`.
pub(crate) fn file_seq(file: &str) -> Result<u64, CdcError> {
    file.rsplit_once('.')
        .and_then(|(_, digits)| (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| CdcError::BadPosition {
            message: format!(
                "binlog file name `{file}` does not end in `.NNNNNN`; give a file name as \
                 SHOW BINARY LOGS lists it"
            ),
        })
}

impl BinlogPosition {
    /// A position; `file` must end in `.NNNNNN` (checked when compared).
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        BinlogPosition { file: file.into(), pos }
    }

    fn key(&self) -> (u64, &str, u64) {
        // A malformed name sorts first; positions are checked where they enter.
        (file_seq(&self.file).unwrap_or(0), &self.file, self.pos)
    }

    /// The mark after every row of the events that end at or before `self`.
    pub fn mark(&self) -> RowMark {
        RowMark { position: self.clone(), row: u32::MAX }
    }
}

impl Ord for BinlogPosition {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The place of one row change in the binlog: the end of its rows event,
/// then its index in the event. Ordered by position, then row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowMark {
    /// The end position of the rows event (the next event's start).
    pub position: BinlogPosition,
    /// The row's index in the event (`u32::MAX`: after all its rows).
    pub row: u32,
}

impl fmt::Display for RowMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.row == u32::MAX {
            write!(f, "{}", self.position)
        } else {
            write!(f, "{}#{}", self.position, self.row)
        }
    }
}

/// Where a source without a saved state starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMode {
    /// Read a snapshot of the captured tables, then follow the binlog from
    /// the snapshot on (the default).
    Initial,
    /// Only changes made after the source starts.
    LatestOffset,
    /// Every change the server still has, from its oldest binlog file.
    EarliestOffset,
    /// Changes from a binlog position (a transaction boundary).
    SpecificOffset(BinlogPosition),
    /// Changes after a MariaDB GTID position, as `@@gtid_binlog_pos` prints
    /// it (`domain-server-seq`, comma-separated for several domains):
    /// reading starts at the first transaction of a listed domain with a
    /// higher sequence number (found with `SHOW BINLOG EVENTS`; other
    /// domains' transactions before it are skipped), or at the binlog's end
    /// if there is none yet. From there on positions are file + offset.
    SpecificGtid(String),
    /// Changes from the first transaction whose binlog timestamp is at or
    /// after this many seconds since the Unix epoch.
    Timestamp(u64),
}

/// A MariaDB GTID `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// Parses a GTID position `d-s-n[,d-s-n...]`, one entry per domain.
pub(crate) fn parse_gtid_set(text: &str) -> Result<Vec<Gtid>, String> {
    let mut set: Vec<Gtid> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let gtid: Gtid = part.parse()?;
        if set.iter().any(|g| g.domain == gtid.domain) {
            return Err(format!("GTID position '{text}' names domain {} twice", gtid.domain));
        }
        set.push(gtid);
    }
    if set.is_empty() {
        return Err(format!("'{text}' is no GTID position: expected domain-server-sequence, e.g. 0-1-42"));
    }
    Ok(set)
}

impl std::str::FromStr for Gtid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is no GTID: expected domain-server-sequence, e.g. 0-1-42");
        let mut parts = s.trim().split('-');
        let (Some(d), Some(sv), Some(n), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(Gtid {
            domain: d.parse().map_err(|_| bad())?,
            server: sv.parse().map_err(|_| bad())?,
            seq: n.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn positions_order_by_file_number_then_offset() {
        let p = |f: &str, pos| BinlogPosition::new(f, pos);
        assert!(p("bin.000009", 900) < p("bin.000010", 4));
        assert!(p("bin.000010", 4) < p("bin.000010", 5));
        assert!(p("bin.000010", 5).mark() > RowMark { position: p("bin.000010", 5), row: 3 });
        assert!(file_seq("nodigits").is_err());
        assert!(file_seq("bin.").is_err());
        assert_eq!(file_seq("a.b.000123").unwrap(), 123);
    }

    #[test]
    fn gtid_positions_parse_one_entry_per_domain() {
        let set = parse_gtid_set("0-1-42, 3-7-9").unwrap();
        assert_eq!(set, [Gtid { domain: 0, server: 1, seq: 42 }, Gtid { domain: 3, server: 7, seq: 9 }]);
        assert!(parse_gtid_set("0-1-42,0-2-50").unwrap_err().contains("domain 0 twice"));
        for bad in ["", "0-1", "0-1-2-3", "a-1-2", "0-1--2", "0-1-99999999999999999999"] {
            assert!(parse_gtid_set(bad).is_err(), "{bad}");
        }
    }
}
