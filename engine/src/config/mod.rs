//! Configuration in the spirit of Flink's `flink-conf.yaml`.
//!
//! Keys use Flink's names where Flink has the concept (`parallelism.default`,
//! `taskmanager.numberOfTaskSlots`, `pipeline.max-parallelism`, ...). Every
//! key is declared in [`OPTIONS`] with its type and default; an unknown key or
//! a bad value is an error that names the key.
//!
//! # Where the configuration comes from
//!
//! 1. The file given by `--config PATH`; otherwise `$SLUICE_CONF_DIR/sluice.yaml`
//!    (an error if that file does not exist); otherwise `./sluice.yaml` if
//!    the working directory has one; otherwise no file.
//! 2. Then every `-D key=value` on the command line overrides the file.
//!
//! The file is YAML, either flat (`parallelism.default: 4`) or nested
//! (`parallelism: {default: 4}`); nested maps are flattened with dots.
//!
//! ```
//! use sluice::config::Configuration;
//! let mut conf = Configuration::from_yaml_str("parallelism.default: 3\n").unwrap();
//! conf.set("taskmanager.numberOfTaskSlots", "2").unwrap();
//! assert_eq!(conf.get_u32("parallelism.default").unwrap(), Some(3));
//! assert!(conf.set("paralelism.default", "2").unwrap_err().to_string().contains("parallelism.default"));
//! ```

mod options;
pub mod redact;
mod restart_strategy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use options::{ConfigOption, ValueKind, OPTIONS};
pub use restart_strategy::RestartStrategy;

/// A configuration problem, naming the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The key is not one Sluice knows.
    #[error("unknown configuration key '{key}'{}", suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default())]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// The value does not parse as the key's type.
    #[error("bad value '{value}' for configuration key '{key}': expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("configuration file '{path}': {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A validated set of configuration values (keys → text).
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

impl Configuration {
    /// An empty configuration (all defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses YAML text (flat or nested keys); every key is validated.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse_yaml(text, Path::new("<inline>"))
    }

    /// Reads and validates a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File { path: path.to_path_buf(), message: format!("cannot read it: {e}") })?;
        Self::parse_yaml(&text, path)
    }

    /// Loads the configuration by the documented discovery rule (see the
    /// module docs): `explicit` is the value of `--config`, if given.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(path) = explicit {
            return Self::from_file(path);
        }
        if let Some(dir) = std::env::var_os("SLUICE_CONF_DIR") {
            let path = PathBuf::from(dir).join("sluice.yaml");
            if !path.is_file() {
                return Err(ConfigError::File {
                    path,
                    message: "SLUICE_CONF_DIR is set but this file does not exist; create it or unset SLUICE_CONF_DIR"
                        .into(),
                });
            }
            return Self::from_file(&path);
        }
        let local = Path::new("sluice.yaml");
        if local.is_file() {
            return Self::from_file(local);
        }
        Ok(Self::new())
    }

    fn parse_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        use yaml_rust2::{Yaml, YamlLoader};
        let docs = YamlLoader::load_from_str(text)
            .map_err(|e| ConfigError::File { path: path.to_path_buf(), message: format!("not valid YAML: {e}") })?;
        let mut conf = Self::new();
        fn walk(prefix: &str, node: &Yaml, out: &mut Vec<(String, String)>, path: &Path) -> Result<(), ConfigError> {
            match node {
                Yaml::Hash(map) => {
                    for (k, v) in map {
                        let k = scalar(k).ok_or_else(|| ConfigError::File {
                            path: path.to_path_buf(),
                            message: format!("a key under '{prefix}' is not a plain value"),
                        })?;
                        let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                        walk(&key, v, out, path)?;
                    }
                    Ok(())
                }
                Yaml::Null => Ok(()),
                other => match scalar(other) {
                    Some(v) => {
                        out.push((prefix.to_string(), v));
                        Ok(())
                    }
                    None => Err(ConfigError::BadValue {
                        key: prefix.to_string(),
                        value: format!("{other:?}"),
                        expected: "a single value".into(),
                    }),
                },
            }
        }
        fn scalar(node: &Yaml) -> Option<String> {
            match node {
                Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
                Yaml::Integer(i) => Some(i.to_string()),
                Yaml::Boolean(b) => Some(b.to_string()),
                _ => None,
            }
        }
        let mut pairs = Vec::new();
        for doc in &docs {
            walk("", doc, &mut pairs, path)?;
        }
        for (k, v) in pairs {
            conf.set(&k, &v)?;
        }
        Ok(conf)
    }

    /// Sets `key` to `value` after checking both.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let option = lookup(key)?;
        validate_value(option, value.trim())?;
        self.values.insert(key.to_string(), value.trim().to_string());
        Ok(())
    }

    /// Applies a `key=value` override as given to `-D`.
    pub fn set_dynamic(&mut self, assignment: &str) -> Result<(), ConfigError> {
        match assignment.split_once('=') {
            Some((k, v)) => self.set(k.trim(), v),
            None => Err(ConfigError::BadValue {
                key: assignment.to_string(),
                value: String::new(),
                expected: "-D key=value".into(),
            }),
        }
    }

    /// Applies every value of `other` on top of this one.
    pub fn merge(&mut self, other: &Configuration) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }

    /// The raw value of `key`, or its default.
    pub fn get_str(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let option = lookup(key)?;
        Ok(self.values.get(key).cloned().or_else(|| option.default.map(str::to_string)))
    }

    /// Whether `key` was set explicitly (file or override), not by default.
    pub fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// A positive integer or port value.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) => v.parse::<u32>().map(Some).map_err(|_| bad(key, &v, "an integer")),
        }
    }

    /// A `true`/`false` value (any case, as the options' allowed words are
    /// matched when a value is set).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(bad(key, &v, "true or false")),
        }
    }

    /// A port or port range value (see [`ValueKind::PortRange`]) as
    /// inclusive bounds.
    pub fn get_port_range(&self, key: &str) -> Result<Option<(u16, u16)>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) => parse_port_range(&v)
                .map(Some)
                .ok_or_else(|| bad(key, &v, "a port number (0-65535) or a range such as 9250-9260")),
        }
    }

    /// A decimal number value.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) => v.parse::<f64>().map(Some).map_err(|_| bad(key, &v, "a number")),
        }
    }

    /// A duration value.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| bad(key, &v, "a duration")),
        }
    }

    /// A memory size value, in bytes.
    pub fn get_memory_size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.get_str(key)? {
            None => Ok(None),
            Some(v) => parse_memory_size(&v).map(Some).ok_or_else(|| bad(key, &v, "a memory size")),
        }
    }

    /// All explicitly set values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// `9250` → (9250, 9250); `9250-9260` → (9250, 9260); `None` for
/// anything else (also a range whose end is below its start).
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.trim().split_once('-') {
        Some((lo, hi)) => (lo.trim().parse::<u16>().ok()?, hi.trim().parse::<u16>().ok()?),
        None => {
            let p = text.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

fn bad(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::BadValue { key: key.into(), value: value.into(), expected: expected.into() }
}

fn lookup(key: &str) -> Result<&'static ConfigOption, ConfigError> {
    OPTIONS.iter().find(|o| o.key == key).ok_or_else(|| ConfigError::UnknownKey {
        key: key.to_string(),
        suggestion: OPTIONS
            .iter()
            .map(|o| (edit_distance(key, o.key), o.key))
            .filter(|(d, k)| *d <= 3.max(k.len() / 4))
            .min()
            .map(|(_, k)| k.to_string()),
    })
}

fn validate_value(option: &ConfigOption, value: &str) -> Result<(), ConfigError> {
    let key = option.key;
    match option.kind {
        ValueKind::PositiveInt => match value.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => Err(bad(key, value, "an integer of at least 1")),
        },
        ValueKind::NonNegativeInt => {
            value.parse::<u32>().map(|_| ()).map_err(|_| bad(key, value, "an integer of at least 0"))
        }
        ValueKind::PositiveNumber => match value.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(()),
            _ => Err(bad(key, value, "a number above 0")),
        },
        ValueKind::MemorySize => {
            parse_memory_size(value).map(|_| ()).ok_or_else(|| bad(key, value, "a memory size such as 256mb or 1g"))
        }
        ValueKind::Port => value.parse::<u16>().map(|_| ()).map_err(|_| bad(key, value, "a port number (0-65535)")),
        ValueKind::PortRange => parse_port_range(value)
            .map(|_| ())
            .ok_or_else(|| bad(key, value, "a port number (0-65535) or a range such as 9250-9260")),
        ValueKind::Duration => {
            parse_duration(value).map(|_| ()).ok_or_else(|| bad(key, value, "a duration such as 500ms, 10s or 5min"))
        }
        ValueKind::Enum(words) => {
            if words.iter().any(|w| w.eq_ignore_ascii_case(value)) {
                Ok(())
            } else {
                Err(bad(key, value, &format!("one of {}", words.join(", "))))
            }
        }
        ValueKind::Text => Ok(()),
    }
}

/// Parses durations as Flink writes them: `500ms`, `500 ms`, `1s`, `2 min`,
/// `1h`; a bare number is milliseconds.
///
/// ```
/// use std::time::Duration;
/// use sluice::config::parse_duration;
/// assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2 min"), Some(Duration::from_secs(120)));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "milliseconds" => n,
        "s" | "sec" | "secs" | "second" | "seconds" => n.checked_mul(1000)?,
        "m" | "min" | "mins" | "minute" | "minutes" => n.checked_mul(60_000)?,
        "h" | "hour" | "hours" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses a memory size: a number of bytes, or a number with a unit
/// (`b`, `k`/`kb`, `m`/`mb`, `g`/`gb`, case-insensitive, binary multiples
/// as in Flink's `MemorySize`).
///
/// ```
/// use sluice::config::parse_memory_size;
/// assert_eq!(parse_memory_size("256mb"), Some(256 << 20));
/// assert_eq!(parse_memory_size("1 g"), Some(1 << 30));
/// assert_eq!(parse_memory_size("4096"), Some(4096));
/// assert_eq!(parse_memory_size("lots"), None);
/// ```
pub fn parse_memory_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn metrics_ports_are_a_port_or_a_range() {
        assert_eq!(parse_port_range("9250"), Some((9250, 9250)));
        assert_eq!(parse_port_range(" 9250 - 9260 "), Some((9250, 9260)));
        assert_eq!(parse_port_range("0"), Some((0, 0)));
        for bad in ["9260-9250", "9250-", "-9250", "x", "70000", "1-70000"] {
            assert_eq!(parse_port_range(bad), None, "{bad}");
        }
        let mut conf = Configuration::new();
        conf.set("metrics.reporter.prom.port", "9250-9260").unwrap();
        assert_eq!(conf.get_port_range("metrics.reporter.prom.port").unwrap(), Some((9250, 9260)));
        let e = conf.set("metrics.reporter.prom.port", "9260-9250").unwrap_err().to_string();
        assert!(e.contains("metrics.reporter.prom.port") && e.contains("9250-9260"), "{e}");
    }

    #[test]
    fn nested_and_flat_yaml_agree() {
        let a = Configuration::from_yaml_str("parallelism.default: 4\ntaskmanager.numberOfTaskSlots: 2\n").unwrap();
        let b =
            Configuration::from_yaml_str("parallelism:\n  default: 4\ntaskmanager:\n  numberOfTaskSlots: 2\n").unwrap();
        assert_eq!(a.get_u32("parallelism.default").unwrap(), b.get_u32("parallelism.default").unwrap());
        assert_eq!(a.get_u32("taskmanager.numberOfTaskSlots").unwrap(), Some(2));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Configuration::from_yaml_str("paralelism.default: 4\n").unwrap_err().to_string();
        assert!(e.contains("'paralelism.default'") && e.contains("did you mean 'parallelism.default'"), "{e}");
        let e = Configuration::from_yaml_str("parallelism.default: 0\n").unwrap_err().to_string();
        assert!(e.contains("'parallelism.default'") && e.contains("at least 1"), "{e}");
        let e = Configuration::new().set("execution.buffer-timeout", "soon").unwrap_err().to_string();
        assert!(e.contains("execution.buffer-timeout"), "{e}");
        let e = Configuration::new().set_dynamic("novalue").unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
    }

    #[test]
    fn defaults_apply() {
        let c = Configuration::new();
        assert_eq!(c.get_u32("pipeline.max-parallelism").unwrap(), Some(128));
        assert_eq!(c.get_u32("parallelism.default").unwrap(), None);
        assert_eq!(c.get_duration("execution.buffer-timeout").unwrap(), Some(Duration::from_millis(100)));
        assert_eq!(c.get_bool("state.backend.changelog.enabled").unwrap(), Some(true));
    }

    #[test]
    fn booleans_read_in_any_case() {
        let mut c = Configuration::new();
        c.set("state.backend.changelog.enabled", "FALSE").unwrap();
        assert_eq!(c.get_bool("state.backend.changelog.enabled").unwrap(), Some(false));
        c.set("state.backend.rocksdb.block.cache-index-and-filter-blocks", "True").unwrap();
        assert_eq!(c.get_bool("state.backend.rocksdb.block.cache-index-and-filter-blocks").unwrap(), Some(true));
        c.set("execution.savepoint.ignore-unclaimed-state", "TRUE").unwrap();
        assert_eq!(c.get_bool("execution.savepoint.ignore-unclaimed-state").unwrap(), Some(true));
        assert!(c.set("state.backend.changelog.enabled", "yes").is_err(), "not an allowed word");
    }
}
