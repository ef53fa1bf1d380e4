//! Which captured tables a statement from the binlog names.
//!
//! With `binlog_format=ROW` the only statements in the binlog besides
//! `BEGIN`/`COMMIT` are DDL (`ALTER`, `DROP`, `RENAME`, `TRUNCATE`, ...).
//! A statement names a table if one of its words is `database.table`, or
//! `table` while the statement's default database is the table's. This may
//! find a table that is only mentioned (e.g. a column of the same name):
//! such a false alarm fails loudly, a missed change would corrupt rows.

use super::table::TableSchema;

/// The statement's words: identifiers with their `.` qualifiers, backticks
/// and quotes removed, lowercase.
fn words(statement: &str) -> Vec<String> {
    statement
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';' | '='))
        .map(|w| w.chars().filter(|c| !matches!(c, '`' | '"' | '\'')).collect::<String>().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The tables of `tables` that `statement` (run with default database
/// `schema`) names.
pub(crate) fn touched_tables<'a>(
    statement: &str,
    schema: &str,
    tables: impl IntoIterator<Item = &'a TableSchema>,
) -> Vec<&'a TableSchema> {
    let words = words(statement);
    let schema = schema.to_lowercase();
    tables
        .into_iter()
        .filter(|t| {
            let (db, name) = (t.database.to_lowercase(), t.table.to_lowercase());
            let qualified = format!("{db}.{name}");
            words.iter().any(|w| *w == qualified || (*w == name && schema == db))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn table(db: &str, t: &str) -> TableSchema {
        let cols = [("id".to_string(), "int".to_string(), "int(11)".to_string())];
        TableSchema::new(db, t, &cols, &["id".to_string()])
    }

    #[test]
    fn finds_the_captured_tables_a_statement_names() {
        let tables = [table("shop", "orders"), table("shop", "items")];
        let names = |sql: &str, schema: &str| {
            touched_tables(sql, schema, tables.iter()).iter().map(|t| t.table.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names("ALTER TABLE `orders` ADD COLUMN x INT", "shop"), ["orders"]);
        assert_eq!(names("alter table shop.Orders drop x", "other"), ["orders"]);
        assert_eq!(names("ALTER TABLE `shop`.`items` ADD y INT", ""), ["items"]);
        assert_eq!(names("TRUNCATE orders", "shop"), ["orders"]);
        assert_eq!(names("RENAME TABLE orders TO o2, items TO i2", "shop"), ["orders", "items"]);
        assert!(names("ALTER TABLE orders ADD x INT", "other").is_empty());
        assert!(names("CREATE TABLE orders_archive (id INT)", "shop").is_empty());
        assert!(names("ALTER TABLE other.orders ADD x INT", "shop").is_empty());
    }
}
