//! ClickHouse connection settings.

use std::sync::{Arc, OnceLock};

use clickhouse::Client;

use crate::SinkError;

/// How to reach ClickHouse.
#[derive(clap::Args, Clone, Debug)]
pub struct ClickhouseConfig {
    /// HTTP endpoint of the ClickHouse server.
    #[arg(
        id = "clickhouse_url",
        long = "clickhouse-url",
        env = "RUNNEL_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub url: String,
    /// Database holding Runnel's tables; `runnel migrate` creates it.
    #[arg(
        id = "clickhouse_database",
        long = "clickhouse-database",
        env = "RUNNEL_CLICKHOUSE_DATABASE",
        default_value = "runnel"
    )]
    pub database: String,
    /// ClickHouse user.
    #[arg(id = "clickhouse_user", long = "clickhouse-user", env = "RUNNEL_CLICKHOUSE_USER", default_value = "default")]
    pub user: String,
    /// ClickHouse password (empty for none).
    #[arg(
        id = "clickhouse_password",
        long = "clickhouse-password",
        env = "RUNNEL_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Cluster (in the servers' `remote_servers`) whose sharded, replicated schema
    /// (`clickhouse-schema/cluster/`) `runnel migrate` applies; writes then wait until every
    /// shard stored its rows (`insert_distributed_sync`). Unset: one server.
    #[arg(id = "clickhouse_cluster", long = "clickhouse-cluster", env = "RUNNEL_CLICKHOUSE_CLUSTER")]
    pub cluster: Option<String>,
    /// The connections [`ClickhouseConfig::pooled_client`]'s clients share (this configuration's
    /// clones share them too).
    #[arg(skip)]
    pub pool: SharedPool,
}

/// One HTTP connection pool, made on first use (in the runtime that first asks).
#[derive(Clone, Default)]
pub struct SharedPool(Arc<OnceLock<Client>>);

impl std::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "SharedPool(open)" } else { "SharedPool(unused)" })
    }
}

impl ClickhouseConfig {
    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), SinkError> {
        let url = url::Url::parse(&self.url).map_err(|e| SinkError::Invalid {
            variable: "RUNNEL_CLICKHOUSE_URL",
            reason: format!("'{}': {e}", self.url),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Invalid {
                variable: "RUNNEL_CLICKHOUSE_URL",
                reason: format!("'{}' is not an http(s) URL", self.url),
            });
        }
        // The name goes into DDL unquoted; keep it to identifier characters.
        if self.database.is_empty() || !self.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(SinkError::Invalid {
                variable: "RUNNEL_CLICKHOUSE_DATABASE",
                reason: format!("'{}' must be letters, digits and _", self.database),
            });
        }
        if let Some(cluster) = self.cluster_name()
            && !cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SinkError::Invalid {
                variable: "RUNNEL_CLICKHOUSE_CLUSTER",
                reason: format!("'{cluster}' must be letters, digits and _"),
            });
        }
        Ok(())
    }

    /// The cluster's name, when one is configured (an empty setting is none).
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster.as_deref().filter(|c| !c.is_empty())
    }

    /// A client for Runnel's database, with connections of its own.
    pub fn client(&self) -> Client {
        self.server_client().with_database(&self.database)
    }

    /// A client for Runnel's database whose connections stay open for the next query: every
    /// client made here shares one pool. For reports, whose queries are a few milliseconds
    /// each: a connection of its own cost each query about 1 ms more on loopback. Use it from
    /// one runtime only (an edge's, a CLI run's): a pooled connection belongs to the runtime it
    /// was opened in.
    pub fn pooled_client(&self) -> Client {
        self.configure(self.pool.0.get_or_init(Client::default).clone()).with_database(&self.database)
    }

    /// A client without a database, for `CREATE DATABASE`.
    pub(crate) fn server_client(&self) -> Client {
        self.configure(Client::default())
    }

    /// `client` pointed at this server, as this user.
    fn configure(&self, client: Client) -> Client {
        let mut client = client.with_url(&self.url).with_user(&self.user).with_validation(false);
        if self.cluster_name().is_some() {
            // An INSERT into a Distributed table answers once every shard stored its rows, so a
            // stored batch (and its fence) is on its shard, not in a local queue.
            client = client.with_setting("insert_distributed_sync", "1");
        }
        if self.password.is_empty() { client } else { client.with_password(&self.password) }
    }

    /// Wraps a client error with the server's address.
    pub(crate) fn error(&self, source: clickhouse::error::Error) -> SinkError {
        SinkError::Clickhouse { url: self.url.clone(), source }
    }

    /// Asks the server for its version: fails with a message naming ClickHouse when it does not answer.
    pub async fn server_version(&self) -> Result<String, SinkError> {
        self.server_client().query("SELECT version()").fetch_one::<String>().await.map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, database: &str) -> ClickhouseConfig {
        ClickhouseConfig {
            url: url.into(),
            database: database.into(),
            user: "default".into(),
            password: String::new(),
            cluster: None,
            pool: Default::default(),
        }
    }

    #[test]
    fn bad_urls_and_database_names_are_refused_naming_the_variable() {
        assert!(config("http://127.0.0.1:8123", "runnel").validate().is_ok());
        let error = config("127.0.0.1:8123", "runnel").validate().unwrap_err().to_string();
        assert!(error.contains("RUNNEL_CLICKHOUSE_URL"), "{error}");
        let error = config("http://h:8123", "run-nel; DROP").validate().unwrap_err().to_string();
        assert!(error.contains("RUNNEL_CLICKHOUSE_DATABASE"), "{error}");
    }

    #[test]
    fn an_empty_cluster_is_none_and_a_bad_one_is_refused() {
        let mut c = config("http://h:8123", "runnel");
        c.cluster = Some(String::new());
        assert_eq!(c.cluster_name(), None);
        assert!(c.validate().is_ok());
        c.cluster = Some("prod east".into());
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("RUNNEL_CLICKHOUSE_CLUSTER"), "{error}");
    }
}
