//! `ParameterTool`: command-line parameters the way Flink jobs read them.
//!
//! Arguments are `--key value`, `-k value`, `--key=value` or a bare `--flag`
//! (value `"true"`). `-D key=value` (or `-Dkey=value`) collects configuration
//! overrides, read by [`StreamExecutionEnvironment::from_params`](crate::StreamExecutionEnvironment::from_params).
//! A value may start with `-` if it is a number (`--offset -5`).
//!
//! ```
//! use sluice::ParameterTool;
//! let params = ParameterTool::from_args(["--host", "localhost", "--port", "7777"]).unwrap();
//! assert_eq!(params.get("host"), Some("localhost"));
//! assert_eq!(params.get_int("port").unwrap(), 7777);
//! assert_eq!(params.get_int_or("rate", 10).unwrap(), 10);
//! assert!(params.get_int("missing").unwrap_err().to_string().contains("--missing"));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

/// A problem with a command-line parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A required parameter was not given.
    #[error("missing required parameter {}", flag(key))]
    Missing {
        /// The parameter's key.
        key: String,
    },
    /// A parameter's value has the wrong form.
    #[error("bad value '{value}' for parameter {}: expected {expected}", flag(key))]
    Malformed {
        /// The parameter's key.
        key: String,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// An argument that is not `--key value`.
    #[error("unexpected argument '{0}': parameters are written --key value")]
    Unexpected(String),
}

fn flag(key: &str) -> String {
    if key.chars().count() == 1 {
        format!("-{key}")
    } else {
        format!("--{key}")
    }
}

/// Parsed command-line parameters.
#[derive(Debug, Clone, Default)]
pub struct ParameterTool {
    values: BTreeMap<String, String>,
    dynamic: Vec<String>,
}

impl ParameterTool {
    /// Parses the process's own arguments (without the program name).
    pub fn from_env() -> Result<Self, ParamError> {
        Self::from_args(std::env::args().skip(1))
    }

    /// Parses arguments (without the program name).
    pub fn from_args<I, S>(args: I) -> Result<Self, ParamError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut out = ParameterTool::default();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if let Some(rest) = arg.strip_prefix("-D") {
                let assignment = if rest.is_empty() {
                    let next = args.get(i).cloned().ok_or_else(|| ParamError::Missing { key: "D".into() })?;
                    i += 1;
                    next
                } else {
                    rest.to_string()
                };
                out.dynamic.push(assignment);
                continue;
            }
            let key = if let Some(k) = arg.strip_prefix("--") {
                k
            } else if let Some(k) = arg.strip_prefix('-') {
                k
            } else {
                return Err(ParamError::Unexpected(arg.clone()));
            };
            if key.is_empty() || is_number(arg) {
                return Err(ParamError::Unexpected(arg.clone()));
            }
            if let Some((k, v)) = key.split_once('=') {
                out.values.insert(k.to_string(), v.to_string());
                continue;
            }
            let value = match args.get(i) {
                Some(next) if !next.starts_with('-') || is_number(next) => {
                    i += 1;
                    next.clone()
                }
                _ => "true".to_string(),
            };
            out.values.insert(key.to_string(), value);
        }
        Ok(out)
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an error naming it.
    pub fn get_required(&self, key: &str) -> Result<&str, ParamError> {
        self.get(key).ok_or_else(|| ParamError::Missing { key: key.into() })
    }

    /// Whether `key` was given.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// An integer value; an error if it is missing or not an integer.
    pub fn get_int(&self, key: &str) -> Result<i64, ParamError> {
        self.parse(key, self.get_required(key)?, "an integer")
    }

    /// An integer value, or `default` if not given; an error if malformed.
    pub fn get_int_or(&self, key: &str, default: i64) -> Result<i64, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => self.parse(key, v, "an integer"),
        }
    }

    /// A non-negative integer value, or `default`; an error if malformed.
    pub fn get_u64_or(&self, key: &str, default: u64) -> Result<u64, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => self.parse(key, v, "a non-negative integer"),
        }
    }

    /// An optional non-negative integer; an error if given and malformed.
    pub fn get_u64_opt(&self, key: &str) -> Result<Option<u64>, ParamError> {
        self.get(key).map(|v| self.parse(key, v, "a non-negative integer")).transpose()
    }

    /// A floating-point value, or `default`; an error if malformed.
    pub fn get_f64_or(&self, key: &str, default: f64) -> Result<f64, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => self.parse(key, v, "a number"),
        }
    }

    /// A duration such as `500ms` or `1s`, or `default`; an error if malformed.
    pub fn get_duration_or(&self, key: &str, default: Duration) -> Result<Duration, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => crate::config::parse_duration(v).ok_or_else(|| ParamError::Malformed {
                key: key.into(),
                value: v.into(),
                expected: "a duration such as 500ms or 1s".into(),
            }),
        }
    }

    /// The `-D key=value` configuration overrides, in order.
    pub fn dynamic_properties(&self) -> &[String] {
        &self.dynamic
    }

    /// All `--key value` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, value: &str, expected: &str) -> Result<T, ParamError> {
        value.trim().parse().map_err(|_| ParamError::Malformed {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        })
    }
}

fn is_number(s: &str) -> bool {
    s.strip_prefix('-').is_some_and(|r| !r.is_empty() && r.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn parses_the_forms() {
        let p =
            ParameterTool::from_args(["--a", "1", "-p", "4", "--flag", "--b=x", "-D", "k=v", "-Dk2=v2", "--neg", "-5"])
                .unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("p"), Some("4"));
        assert_eq!(p.get("flag"), Some("true"));
        assert_eq!(p.get("b"), Some("x"));
        assert_eq!(p.get_int("neg").unwrap(), -5);
        assert_eq!(p.dynamic_properties(), ["k=v", "k2=v2"]);
    }

    #[test]
    fn errors_name_the_parameter() {
        let p = ParameterTool::from_args(["--port", "seventy"]).unwrap();
        let e = p.get_int("port").unwrap_err().to_string();
        assert_eq!(e, "bad value 'seventy' for parameter --port: expected an integer");
        let e = p.get_required("host").unwrap_err().to_string();
        assert_eq!(e, "missing required parameter --host");
        let e = ParameterTool::from_args(["stray"]).unwrap_err().to_string();
        assert!(e.contains("'stray'"), "{e}");
    }
}
