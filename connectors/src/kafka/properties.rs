//! Client properties a user sets on a Kafka builder (`set_property`, as on
//! Flink's `KafkaSource.builder().setProperty`): security settings
//! (`security.protocol`, `sasl.*`, `ssl.*`) and tuning, passed to
//! librdkafka. Secrets among them never show in `Debug` output or logs.

use rdkafka::config::ClientConfig;
use std::collections::BTreeMap;

/// Key fragments that mark a property's value as secret.
const SECRET_MARKERS: &[&str] = &["password", "secret", "jaas", "ssl.key.pem", "token", "credential"];

/// Whether the value of property `key` must not be shown.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m))
}

/// Properties by key; `Debug` shows secret values as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(BTreeMap<String, String>);

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, if is_secret(k) { "***" } else { v.as_str() }))).finish()
    }
}

impl ClientProperties {
    /// Sets `key` to `value` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.trim().to_string(), value.to_string());
    }

    /// [`set`](Self::set) for each pair, in order.
    pub fn set_all<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (k, v) in pairs {
            self.set(k, v);
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Applies every property to `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        for (k, v) in &self.0 {
            config.set(k, v);
        }
    }

    /// Whether the connection to the brokers is plain TCP without SASL
    /// (`security.protocol` unset or `PLAINTEXT`).
    pub fn is_plaintext(&self) -> bool {
        self.get("security.protocol").is_none_or(|p| p.eq_ignore_ascii_case("plaintext"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let mut p = ClientProperties::default();
        p.set("security.protocol", "SASL_SSL");
        p.set("sasl.password", "hunter2");
        p.set("sasl.jaas.config", "org.apache... password=\"hunter2\";");
        p.set("ssl.key.password", "hunter2");
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
        assert!(!p.is_plaintext());
        assert!(ClientProperties::default().is_plaintext());
    }
}
