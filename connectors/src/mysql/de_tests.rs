//! Unit tests of the row and value deserializers (conversion without a server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use serde::Deserialize;
use std::collections::HashMap;

fn col(name: &str, data_type: &str, column_type: &str) -> ColumnInfo {
    ColumnInfo::new(name, data_type, column_type)
}

fn read<T: DeserializeOwned>(columns: &[ColumnInfo], values: &[Value]) -> Result<T, DeError> {
    T::deserialize(RowDe::new(columns, values))
}

#[derive(Debug, PartialEq, Deserialize)]
enum Status {
    #[serde(rename = "new")]
    New,
    #[serde(rename = "paid")]
    Paid,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Everything {
    id: u64,
    small: i8,
    flag: bool,
    ratio: f32,
    price: String,
    price_f: f64,
    name: String,
    note: Option<String>,
    missing_ok: Option<i32>,
    born: String,
    at: String,
    took: String,
    data: Vec<u8>,
    bits: u8,
    status: Status,
}

fn everything() -> (Vec<ColumnInfo>, Vec<Value>) {
    let columns = vec![
        col("id", "bigint", "bigint(20) unsigned"),
        col("small", "tinyint", "tinyint(4)"),
        col("flag", "tinyint", "tinyint(1)"),
        col("ratio", "float", "float"),
        col("price", "decimal", "decimal(10,2)"),
        col("price_f", "decimal", "decimal(10,2)"),
        col("name", "varchar", "varchar(20)"),
        col("note", "text", "text"),
        col("born", "date", "date"),
        col("at", "datetime", "datetime(6)"),
        col("took", "time", "time"),
        col("data", "blob", "blob"),
        col("bits", "bit", "bit(3)"),
        col("status", "enum", "enum('new','paid')"),
    ];
    let values = vec![
        Value::UInt(u64::MAX),
        Value::Int(-7),
        Value::Int(1),
        Value::Float(0.5),
        Value::Bytes(b"12.34".to_vec()),
        Value::Bytes(b"12.34".to_vec()),
        Value::Bytes("Zoë".as_bytes().to_vec()),
        Value::NULL,
        Value::Date(2024, 2, 29, 0, 0, 0, 0),
        Value::Date(2024, 2, 29, 13, 5, 9, 120),
        Value::Time(true, 1, 2, 3, 4, 0),
        Value::Bytes(vec![0, 255]),
        Value::Bytes(vec![5]),
        Value::Bytes(b"paid".to_vec()),
    ];
    (columns, values)
}

#[test]
fn maps_each_mysql_type_onto_its_field() {
    let (columns, values) = everything();
    let row: Everything = read(&columns, &values).unwrap();
    assert_eq!(
        row,
        Everything {
            id: u64::MAX,
            small: -7,
            flag: true,
            ratio: 0.5,
            price: "12.34".into(),
            price_f: 12.34,
            name: "Zoë".into(),
            note: None,
            missing_ok: None,
            born: "2024-02-29".into(),
            at: "2024-02-29T13:05:09.000120".into(),
            took: "-26:03:04".into(),
            data: vec![0, 255],
            bits: 5,
            status: Status::Paid,
        }
    );
    // Without microseconds no fraction is written.
    let at = [col("at", "timestamp", "timestamp")];
    let s: String = read(&at, &[Value::Date(2024, 1, 2, 3, 4, 5, 0)]).unwrap();
    assert_eq!(s, "2024-01-02T03:04:05");
}

#[test]
fn other_record_shapes() {
    let (columns, values) = everything();
    let first_two: (u64, i64) = read(&columns[..2], &values[..2]).unwrap();
    assert_eq!(first_two, (u64::MAX, -7));
    let one: String = read(&columns[6..7], &values[6..7]).unwrap();
    assert_eq!(one, "Zoë");
    let map: HashMap<String, Option<String>> = read(&columns[6..8], &values[6..8]).unwrap();
    assert_eq!(map["name"].as_deref(), Some("Zoë"));
    assert_eq!(map["note"], None);
    let e = read::<String>(&columns[..2], &values[..2]).unwrap_err();
    assert!(e.to_string().contains("exactly one selected column"), "{e}");
}

#[test]
fn errors_name_the_column_and_the_problem() {
    let (columns, values) = everything();
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct BlobString {
        data: String,
    }
    let e = read::<BlobString>(&columns, &values).unwrap_err();
    assert!(e.is_definite());
    assert_eq!(
        e.to_string(),
        "column `data` has MySQL type BLOB and cannot be read into a string field \
         (binary columns map to Vec<u8>)"
    );

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct NotNullNote {
        note: String,
    }
    let e = read::<NotNullNote>(&columns, &values).unwrap_err();
    assert!(e.to_string().contains("column `note` is NULL but its field is not an Option"), "{e}");

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct TooSmall {
        id: u32,
    }
    let e = read::<TooSmall>(&columns, &values).unwrap_err();
    assert!(e.to_string().starts_with("column `id`: invalid value: integer"), "{e}");

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct NameAsNumber {
        name: i64,
    }
    let e = read::<NameAsNumber>(&columns, &values).unwrap_err();
    assert!(e.to_string().contains("text columns map to String"), "{e}");

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct NoColumn {
        customer: String,
    }
    let e = read::<NoColumn>(&columns, &values).unwrap_err();
    assert!(matches!(e, DeError::MissingField("customer")), "{e}");

    let geo = [col("shape", "geometry", "geometry")];
    let e = read::<String>(&geo, &[Value::Bytes(vec![1, 2])]).unwrap_err();
    assert!(e.to_string().contains("GEOMETRY") && e.to_string().contains("spatial"));

    let bad_utf8 = [col("name", "varchar", "varchar(3)")];
    let e = read::<String>(&bad_utf8, &[Value::Bytes(vec![0xff])]).unwrap_err();
    assert!(e.to_string().contains("not valid UTF-8"), "{e}");
}

#[test]
fn probe_finds_fields_and_definite_mismatches() {
    let (columns, _) = everything();
    let p = probe::<Everything>(&columns);
    assert!(p.error.is_none(), "{:?}", p.error.map(|e| e.to_string()));
    assert_eq!(p.fields.unwrap().len(), 15);

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        id: u64,
        at: i64,
    }
    let p = probe::<Wrong>(&columns);
    let e = p.error.unwrap();
    assert!(e.is_definite());
    assert!(e.to_string().contains("column `at` has MySQL type DATETIME"), "{e}");

    // A value the type itself rejects proves nothing.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Picky {
        #[serde(deserialize_with = "reject")]
        name: String,
    }
    fn reject<'de, D: de::Deserializer<'de>>(_: D) -> Result<String, D::Error> {
        Err(de::Error::custom("no"))
    }
    let p = probe::<Picky>(&columns);
    assert!(!p.error.unwrap().is_definite());
    assert_eq!(p.fields.unwrap(), ["name"]);
}
