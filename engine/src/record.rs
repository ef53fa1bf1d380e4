//! What a record is: the bounds every stream element type meets, the bounds
//! of keys, and how records are printed.
//!
//! Records are plain Rust values. They are `Clone` (a broadcast or a fan-out
//! hands copies to several consumers) and serde-serializable, because a
//! record that crosses a process boundary (cluster mode) is encoded; inside a
//! process and between chained operators they are moved, never encoded.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;

/// The bounds of a stream element type. Implemented for every type that
/// meets them. `Sync` because elements can be keyed state, which a heap
/// snapshot reads from its upload thread.
pub trait Data: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Data for T {}

/// The bounds of a key of a [`KeyedStream`](crate::KeyedStream): keys are
/// hashed (with a stable hash) into key groups and compared for equality.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// How a record is rendered by `print()` and `write_as_text()`: like Flink's
/// `toString()`, so a `(String, i64)` prints as `(hello,3)`.
///
/// Implemented for strings, numbers, `bool`, `char`, `Option`, `Vec` and
/// tuples of up to four elements; implement it for your own types.
///
/// ```
/// use sluice::RecordDisplay;
/// assert_eq!(("hello".to_string(), 3i64).to_record_string(), "(hello,3)");
/// ```
pub trait RecordDisplay {
    /// Appends this record's text form to `out`.
    fn fmt_record(&self, out: &mut String);

    /// This record's text form.
    fn to_record_string(&self) -> String {
        let mut s = String::new();
        self.fmt_record(&mut s);
        s
    }
}

fn display_into<T: std::fmt::Display + ?Sized>(value: &T, out: &mut String) {
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

macro_rules! display_via_fmt {
    ($($t:ty),*) => {
        $(impl RecordDisplay for $t {
            fn fmt_record(&self, out: &mut String) { display_into(self, out) }
        })*
    };
}
display_via_fmt!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64, bool, char);

impl RecordDisplay for String {
    fn fmt_record(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: RecordDisplay> RecordDisplay for Option<T> {
    fn fmt_record(&self, out: &mut String) {
        match self {
            Some(v) => v.fmt_record(out),
            None => out.push_str("null"),
        }
    }
}

impl<T: RecordDisplay> RecordDisplay for Vec<T> {
    fn fmt_record(&self, out: &mut String) {
        out.push('[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            v.fmt_record(out);
        }
        out.push(']');
    }
}

impl<A: RecordDisplay, B: RecordDisplay> RecordDisplay for (A, B) {
    fn fmt_record(&self, out: &mut String) {
        out.push('(');
        self.0.fmt_record(out);
        out.push(',');
        self.1.fmt_record(out);
        out.push(')');
    }
}

impl<A: RecordDisplay, B: RecordDisplay, C: RecordDisplay> RecordDisplay for (A, B, C) {
    fn fmt_record(&self, out: &mut String) {
        out.push('(');
        self.0.fmt_record(out);
        out.push(',');
        self.1.fmt_record(out);
        out.push(',');
        self.2.fmt_record(out);
        out.push(')');
    }
}

impl<A: RecordDisplay, B: RecordDisplay, C: RecordDisplay, D: RecordDisplay> RecordDisplay for (A, B, C, D) {
    fn fmt_record(&self, out: &mut String) {
        out.push('(');
        self.0.fmt_record(out);
        out.push(',');
        self.1.fmt_record(out);
        out.push(',');
        self.2.fmt_record(out);
        out.push(',');
        self.3.fmt_record(out);
        out.push(')');
    }
}
