//! The statements the MySQL source runs, built from the resolved options.
//!
//! Identifiers are quoted with backticks (doubled inside); positions are
//! bound as parameters; the batch size, the split and the lag are numbers
//! written into the text, so each subtask prepares a handful of statements.

use super::position::TrackingValue;
use mysql_async::Value;
use std::time::Duration;

/// A MySQL identifier in backticks.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The reading plan of one subtask.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    table: String,
    select: String,
    tracking: String,
    partition: Option<String>,
    lag: Option<String>,
    batch_size: usize,
}

/// How rows are split over parallel subtasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split<'a> {
    /// The integer column.
    pub column: &'a str,
    /// This subtask.
    pub subtask: u32,
    /// The parallelism.
    pub parallelism: u32,
}

impl Plan {
    /// The plan for `columns` of `database.table` tracked by `tracking`.
    pub(crate) fn new(
        database: &str,
        table: &str,
        columns: &[&str],
        tracking: &str,
        split: Option<Split<'_>>,
        lag: Option<Duration>,
        batch_size: usize,
    ) -> Self {
        let tracking = quote(tracking);
        // The tracking column comes last, after the record's columns, so
        // the position is read from the same row whatever the record holds.
        let select =
            columns.iter().map(|c| quote(c)).chain(std::iter::once(tracking.clone())).collect::<Vec<_>>().join(", ");
        let partition = split.filter(|s| s.parallelism > 1).map(|s| {
            // MOD of a negative number is negative or zero: -1 MOD 3 = -1
            // belongs to subtask 2, hence the second residue.
            format!(
                "MOD({}, {}) IN ({}, {})",
                quote(s.column),
                s.parallelism,
                s.subtask,
                i64::from(s.subtask) - i64::from(s.parallelism)
            )
        });
        let lag = lag.map(|l| format!("{tracking} <= NOW(6) - INTERVAL {} MICROSECOND", l.as_micros()));
        Plan { table: format!("{}.{}", quote(database), quote(table)), select, tracking, partition, lag, batch_size }
    }

    fn statement(&self, mut conditions: Vec<String>, limit: bool) -> String {
        conditions.extend(self.partition.iter().cloned());
        conditions.extend(self.lag.iter().cloned());
        let mut sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {}",
            self.select,
            self.table,
            conditions.join(" AND "),
            self.tracking
        );
        if limit {
            // One row more than a batch shows whether the batch ends inside
            // a run of equal tracking values.
            sql.push_str(&format!(" LIMIT {}", self.batch_size + 1));
        }
        sql
    }

    /// The next batch plus one row: rows after `after` (all rows with a
    /// tracking value if `None`), up to `end` if given, in tracking order.
    pub(crate) fn batch(&self, after: Option<&TrackingValue>, end: Option<&TrackingValue>) -> (String, Vec<Value>) {
        let t = &self.tracking;
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        match after {
            Some(v) => {
                conditions.push(format!("{t} > ?"));
                params.push(v.to_param());
            }
            None => conditions.push(format!("{t} IS NOT NULL")),
        }
        if let Some(v) = end {
            conditions.push(format!("{t} <= ?"));
            params.push(v.to_param());
        }
        (self.statement(conditions, true), params)
    }

    /// Every row whose tracking value is `at` (a batch that holds only rows
    /// of one value is completed with this, so a value is never split).
    pub(crate) fn ties(&self, at: &TrackingValue) -> (String, Vec<Value>) {
        (self.statement(vec![format!("{} = ?", self.tracking)], false), vec![at.to_param()])
    }

    /// The largest tracking value now readable (snapshot-only mode).
    pub(crate) fn max(&self) -> String {
        let mut sql = format!("SELECT MAX({}) FROM {}", self.tracking, self.table);
        if let Some(lag) = &self.lag {
            sql.push_str(" WHERE ");
            sql.push_str(lag);
        }
        sql
    }

    /// The batch size.
    pub(crate) fn batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The query that describes a table's columns.
pub(crate) const COLUMNS_SQL: &str = "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE \
     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
     ORDER BY ORDINAL_POSITION";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote("id"), "`id`");
        assert_eq!(quote("we`ird"), "`we``ird`");
    }

    #[test]
    fn builds_the_batch_query() {
        let plan = Plan::new("shop", "orders", &["id", "name"], "id", None, None, 100);
        let (sql, params) = plan.batch(None, None);
        assert_eq!(
            sql,
            "SELECT `id`, `name`, `id` FROM `shop`.`orders` WHERE `id` IS NOT NULL \
             ORDER BY `id` LIMIT 101"
        );
        assert!(params.is_empty());
        let (sql, params) = plan.batch(Some(&TrackingValue::Int(41)), Some(&TrackingValue::Int(99)));
        assert_eq!(
            sql,
            "SELECT `id`, `name`, `id` FROM `shop`.`orders` WHERE `id` > ? AND `id` <= ? \
             ORDER BY `id` LIMIT 101"
        );
        assert_eq!(params, vec![Value::Int(41), Value::Int(99)]);
        assert_eq!(plan.max(), "SELECT MAX(`id`) FROM `shop`.`orders`");
    }

    #[test]
    fn splits_by_mod_and_holds_back_a_lag() {
        let split = Split { column: "id", subtask: 1, parallelism: 3 };
        let plan = Plan::new("db", "t", &["id"], "updated", Some(split), Some(Duration::from_secs(2)), 10);
        let (sql, _) = plan.batch(Some(&TrackingValue::DateTime("2024-01-01 00:00:00.000000".into())), None);
        assert_eq!(
            sql,
            "SELECT `id`, `updated` FROM `db`.`t` WHERE `updated` > ? AND MOD(`id`, 3) IN (1, -2) \
             AND `updated` <= NOW(6) - INTERVAL 2000000 MICROSECOND ORDER BY `updated` LIMIT 11"
        );
        let (ties, params) = plan.ties(&TrackingValue::DateTime("x".into()));
        assert!(ties.contains("WHERE `updated` = ? AND MOD(`id`, 3) IN (1, -2)"));
        assert!(!ties.contains("LIMIT"));
        assert_eq!(params, vec![Value::Bytes(b"x".to_vec())]);
        assert!(plan.max().ends_with("WHERE `updated` <= NOW(6) - INTERVAL 2000000 MICROSECOND"));
        // Parallelism 1 reads everything.
        let one = Split { column: "id", subtask: 0, parallelism: 1 };
        let plan = Plan::new("db", "t", &["id"], "id", Some(one), None, 10);
        assert!(!plan.batch(None, None).0.contains("MOD"));
    }

    #[test]
    fn every_integer_lands_in_exactly_one_subtask() {
        // MySQL's MOD truncates like Rust's `%`.
        for p in 1..=5i64 {
            for x in -20i64..20 {
                let owners: Vec<i64> = (0..p).filter(|&i| x % p == i || x % p == i - p).collect();
                assert_eq!(owners.len(), 1, "x={x} p={p}");
            }
        }
    }
}
