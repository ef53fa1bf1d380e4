//! MariaDB in a container, for the MySQL source's tests.
//!
//! [`MariaDb::start`] runs the image of [`mariadb_image`] through
//! `testcontainers` with a database, a user and passwords set by
//! environment (the contract of `docker/mariadb/entrypoint.sh`), publishes
//! port 3306 on a port of 127.0.0.1 that Docker picks, waits until the
//! server logs "ready for connections" (on stderr) and until a real login
//! succeeds. The container is removed when the [`MariaDb`] drops;
//! [`MariaDb::shared`] hands the same container to every test of a binary
//! that runs at the same time. [`SqlClient`] runs setup statements.

use crate::images::mariadb_image;
use crate::{Error, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

/// A MariaDB server in a container, removed on drop.
pub struct MariaDb {
    container: Container<GenericImage>,
    port: u16,
}

/// The container shared by the tests of one binary (see [`MariaDb::shared`]).
static SHARED: Mutex<Weak<MariaDb>> = Mutex::new(Weak::new());

fn service(what: impl Into<String>) -> impl FnOnce(String) -> Error {
    let what = what.into();
    move |message| Error::Service { what, message }
}

impl MariaDb {
    /// The database the container creates.
    pub const DATABASE: &'static str = "sluice";
    /// The user the container creates (all privileges on [`Self::DATABASE`]).
    pub const USER: &'static str = "sluice";
    /// [`Self::USER`]'s password.
    pub const PASSWORD: &'static str = "sluice-test-pw";
    /// The password of `root`.
    pub const ROOT_PASSWORD: &'static str = "root-test-pw";
    /// The host the server is published on.
    pub const HOST: &'static str = "127.0.0.1";

    /// Starts a server and waits until it accepts logins.
    pub fn start() -> Result<Self> {
        let (name, tag) = mariadb_image();
        let what = format!("MariaDB container {name}:{tag}");
        let container = GenericImage::new(name, tag)
            .with_exposed_port(3306.tcp())
            .with_wait_for(WaitFor::message_on_stderr("ready for connections"))
            .with_env_var("MYSQL_DATABASE", Self::DATABASE)
            .with_env_var("MYSQL_USER", Self::USER)
            .with_env_var("MYSQL_PASSWORD", Self::PASSWORD)
            .with_env_var("MYSQL_ROOT_PASSWORD", Self::ROOT_PASSWORD)
            .with_host_config_modifier(|host| {
                // Only on loopback, on a port Docker picks (no race with
                // another process for a port chosen in advance).
                let binding = PortBinding { host_ip: Some(Self::HOST.into()), host_port: None };
                host.publish_all_ports = Some(false);
                host.port_bindings = Some(HashMap::from([("3306/tcp".to_string(), Some(vec![binding]))]));
            })
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .map_err(|e| e.to_string())
            .map_err(|e| format!("{e}; is Docker running? build the image with `scripts/docker-images.sh`"))
            .map_err(service(what.clone()))?;
        let port = container.get_host_port_ipv4(3306.tcp()).map_err(|e| e.to_string()).map_err(service(what))?;
        let db = MariaDb { container, port };
        db.wait_for_login(Duration::from_secs(60))?;
        Ok(db)
    }

    /// The running shared server, started if no test holds it. It is
    /// removed when the last holder drops its `Arc` (a later call starts a
    /// new one).
    pub fn shared() -> Result<Arc<Self>> {
        let mut slot = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(db) = slot.upgrade() {
            return Ok(db);
        }
        let db = Arc::new(MariaDb::start()?);
        *slot = Arc::downgrade(&db);
        Ok(db)
    }

    fn wait_for_login(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            match SqlClient::connect(&self.url()) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > limit => {
                    return Err(Error::Service {
                        what: format!("MariaDB at {}:{}", Self::HOST, self.port),
                        message: format!("no login within {limit:?}: {e}"),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The host port that reaches the server's 3306.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self) -> String {
        format!("mysql://{}:{}@{}:{}/{}", Self::USER, Self::PASSWORD, Self::HOST, self.port, Self::DATABASE)
    }

    /// The same as [`Self::url`] for `root`.
    pub fn root_url(&self) -> String {
        format!("mysql://root:{}@{}:{}/{}", Self::ROOT_PASSWORD, Self::HOST, self.port, Self::DATABASE)
    }

    /// A client logged in as `root`, for setup and for killing connections.
    pub fn root_client(&self) -> Result<SqlClient> {
        SqlClient::connect(&self.root_url())
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// Stops the server (the container is still removed on drop): clients
    /// lose their connections and new ones are refused.
    pub fn stop(&self) -> Result<()> {
        self.container.stop().map_err(|e| e.to_string()).map_err(service(format!("stopping container {}", self.id())))
    }
}

/// A blocking MySQL client for test setup, on its own tokio runtime.
pub struct SqlClient {
    conn: Option<Conn>,
    rt: tokio::runtime::Runtime,
    url: String,
}

impl SqlClient {
    /// Connects to `url` (`mysql://user:password@host:port/db`).
    pub fn connect(url: &str) -> Result<Self> {
        let what = || format!("MySQL at {}", url.rsplit('@').next().unwrap_or(url));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .map_err(service(what()))?;
        let opts = Opts::from_url(url).map_err(|e| e.to_string()).map_err(service(what()))?;
        let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
        let conn = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), Conn::new(opts)).await })
            .map_err(|_| "no answer within 10 s".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(service(what()))?;
        Ok(SqlClient { conn: Some(conn), rt, url: what() })
    }

    /// Runs statements (text protocol; several separated by `;` are fine).
    pub fn exec(&mut self, sql: &str) -> Result<()> {
        let what = format!("{} running `{sql}`", self.url);
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Service { what: what.clone(), message: "the connection is closed".into() })?;
        self.rt.block_on(conn.query_drop(sql)).map_err(|e| e.to_string()).map_err(service(what))
    }

    /// Runs a query; each cell as text, NULL as `None`.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let what = format!("{} running `{sql}`", self.url);
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Service { what: what.clone(), message: "the connection is closed".into() })?;
        let rows: Vec<Row> = self.rt.block_on(conn.query(sql)).map_err(|e| e.to_string()).map_err(service(what))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.unwrap_raw()
                    .into_iter()
                    .map(|v| match v {
                        None | Some(Value::NULL) => None,
                        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                        Some(other) => Some(other.as_sql(true)),
                    })
                    .collect()
            })
            .collect())
    }
}

impl Drop for SqlClient {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await });
        }
    }
}
