//! Where a MySQL connector connects, shared by the polling source's and the
//! CDC source's builders: a URL (`mysql://user:password@host:3306/db`), or a
//! host, port, user and password; and the database that overrides the
//! URL's. [`server_setters!`] gives a builder the setters; secrets never
//! show in `Debug`.

use crate::error::Error;
use mysql_async::{Opts, OptsBuilder};

/// The server settings of a builder.
#[derive(Clone)]
pub(crate) struct ServerAddress {
    pub(crate) url: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) database: Option<String>,
}

impl Default for ServerAddress {
    fn default() -> Self {
        ServerAddress { url: None, host: None, port: 3306, user: None, password: None, database: None }
    }
}

impl std::fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAddress")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .finish()
    }
}

pub(crate) use sluice::config::redact::redact_url;

impl ServerAddress {
    /// The connection options (over TCP, never a local socket), or an
    /// [`Error::InvalidOption`] of `connector` saying which setting to fix.
    pub(crate) fn opts(&self, connector: &'static str) -> Result<Opts, Error> {
        let invalid =
            |option: &'static str, message: &str| Error::InvalidOption { connector, option, message: message.into() };
        let base = match (&self.url, &self.host) {
            (Some(_), Some(_)) => return Err(invalid("host", "give either .url(...) or .host(...), not both")),
            (None, None) => {
                return Err(invalid("url", "no server: set .url(\"mysql://user:password@host:3306/db\") or .host(...)"))
            }
            (Some(url), None) => {
                let opts = Opts::from_url(url).map_err(|e| invalid("url", &format!("not a valid MySQL URL: {e}")))?;
                OptsBuilder::from_opts(opts)
            }
            (None, Some(host)) => {
                let user = self.user.clone().ok_or_else(|| invalid("user", "set .user(...) along with .host(...)"))?;
                OptsBuilder::default()
                    .ip_or_hostname(host.clone())
                    .tcp_port(self.port)
                    .user(Some(user))
                    .pass(self.password.clone())
            }
        };
        let mut builder = base.prefer_socket(false);
        if let Some(db) = &self.database {
            builder = builder.db_name(Some(db.clone()));
        }
        Ok(Opts::from(builder))
    }
}

/// The server setters of a builder whose [`ServerAddress`] is the field
/// `$field`: `url`, `host`, `port`, `user`, `password`, `database`.
macro_rules! server_setters {
    ($field:ident) => {
        /// The server as a URL: `mysql://user:password@host:3306/database`
        /// (mysql_async's URL options such as `?prefer_socket=false` apply).
        pub fn url(mut self, url: impl Into<String>) -> Self {
            self.$field.url = Some(url.into());
            self
        }

        /// The server's host name or IP address (instead of `url`).
        pub fn host(mut self, host: impl Into<String>) -> Self {
            self.$field.host = Some(host.into());
            self
        }

        /// The server's TCP port (default 3306).
        pub fn port(mut self, port: u16) -> Self {
            self.$field.port = port;
            self
        }

        /// The user to connect as (the source's docs say which privileges
        /// it needs).
        pub fn user(mut self, user: impl Into<String>) -> Self {
            self.$field.user = Some(user.into());
            self
        }

        /// The user's password (never shown in `Debug` output or logs).
        pub fn password(mut self, password: impl Into<String>) -> Self {
            self.$field.password = Some(password.into());
            self
        }

        /// The database of unqualified table names (overrides the URL's).
        pub fn database(mut self, database: impl Into<String>) -> Self {
            self.$field.database = Some(database.into());
            self
        }
    };
}
pub(crate) use server_setters;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_in_debug_output() {
        assert_eq!(redact_url("mysql://u:secret@h:3306/db"), "mysql://u:******@h:3306/db");
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
        let a =
            ServerAddress { url: Some("mysql://u:pw@h/db".into()), password: Some("pw2".into()), ..Default::default() };
        let shown = format!("{a:?}");
        assert!(shown.contains("***") && !shown.contains(":pw@") && !shown.contains("pw2"), "{shown}");
    }

    #[test]
    fn either_a_url_or_a_host_with_a_user() {
        let err = |a: ServerAddress| a.opts("mysql").unwrap_err().to_string();
        assert!(err(ServerAddress::default()).contains("no server"));
        let both = ServerAddress { url: Some("mysql://u@h/db".into()), host: Some("h".into()), ..Default::default() };
        assert!(err(both).contains("not both"));
        assert!(err(ServerAddress { host: Some("h".into()), ..Default::default() }).contains(".user"));
        assert!(
            err(ServerAddress { url: Some("http://x".into()), ..Default::default() }).contains("not a valid MySQL URL")
        );
        let ok = ServerAddress {
            host: Some("h".into()),
            user: Some("u".into()),
            database: Some("d".into()),
            ..Default::default()
        };
        let opts = ok.opts("mysql").unwrap();
        assert_eq!((opts.ip_or_hostname(), opts.user(), opts.db_name()), ("h", Some("u"), Some("d")));
    }
}
