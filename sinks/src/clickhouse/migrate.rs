//! Schema migrations: the numbered `.sql` files of `clickhouse-schema/`, applied in order and
//! recorded with their checksums in `schema_migrations`.
//!
//! - An applied file that was edited afterwards is refused rather than silently skipped: the
//!   database would no longer match the files.
//! - A statement preceded by `-- min-version: 19.9` runs only on servers of that version or
//!   newer; on older ones it is recorded in `schema_skipped` and applied by a later
//!   `runnel migrate` once the server is upgraded. One schema serves 18.16 and current servers.
//! - Two `runnel migrate` at once are safe: `CREATE TABLE schema_migrations_lock` (without
//!   `IF NOT EXISTS`) succeeds for exactly one of them; the other waits until the lock table is
//!   dropped and then finds the migrations applied.

use std::fmt;
use std::time::{Duration, Instant};

use clickhouse::Row;
use serde::Deserialize;

use super::ClickhouseConfig;
use super::Placeholders;
use crate::SinkError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

/// A server version, major and minor (`18.16`, `25.3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u32, pub u32);

impl ServerVersion {
    /// Parses `18.16`, `18.16.1` or `25.3.2.39`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self(major, minor))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// One statement of a migration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The SQL, without comments and the final `;`.
    pub sql: String,
    /// The oldest server that accepts it (`-- min-version: X.Y` on a line before it).
    pub min_version: Option<ServerVersion>,
}

impl Statement {
    /// Whether a server of `version` runs it.
    pub fn runs_on(&self, version: ServerVersion) -> bool {
        self.min_version.is_none_or(|min| version >= min)
    }
}

/// One migration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The number its file name starts with.
    pub version: u32,
    /// The file name.
    pub name: String,
    /// xxh3 of the file's text, hex.
    pub checksum: String,
    /// The statements, in order.
    pub statements: Vec<Statement>,
}

const GUARD: &str = "min-version:";

impl Migration {
    /// Parses a file: `NNNN_name.sql` with statements ending in `;`, comments on lines of their
    /// own (`-- …`), and `-- min-version: X.Y` guards.
    pub fn parse(name: &str, text: &str) -> Result<Self, SinkError> {
        let bad = |reason: &str| SinkError::Migration { file: name.to_string(), reason: reason.to_string() };
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        let version =
            digits.parse().map_err(|_| bad("file name must start with its version number, e.g. 0001_clicks.sql"))?;
        let mut statements = Vec::new();
        let mut sql = String::new();
        let mut min_version = None;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(comment) = trimmed.strip_prefix("--") {
                if let Some(guard) = comment.trim().strip_prefix(GUARD) {
                    let parsed = ServerVersion::parse(guard).ok_or_else(|| {
                        bad(&format!(
                            "line {}: `{GUARD}` needs a version like 19.9, got `{}`",
                            number + 1,
                            guard.trim()
                        ))
                    })?;
                    if !sql.trim().is_empty() {
                        return Err(bad(&format!(
                            "line {}: `{GUARD}` must come before a statement, not inside one",
                            number + 1
                        )));
                    }
                    min_version = Some(parsed);
                }
                continue;
            }
            let mut rest = line;
            while let Some(end) = rest.find(';') {
                sql.push_str(&rest[..end]);
                let statement = sql.trim();
                if !statement.is_empty() {
                    statements.push(Statement { sql: statement.to_string(), min_version: min_version.take() });
                }
                sql.clear();
                rest = &rest[end + 1..];
            }
            sql.push_str(rest);
            sql.push('\n');
        }
        if !sql.trim().is_empty() {
            statements.push(Statement { sql: sql.trim().to_string(), min_version: min_version.take() });
        }
        if min_version.is_some() {
            return Err(bad(&format!("`{GUARD}` at the end of the file guards no statement")));
        }
        if statements.is_empty() {
            return Err(bad("contains no statements"));
        }
        Ok(Self {
            version,
            name: name.to_string(),
            checksum: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes())),
            statements,
        })
    }

    /// The migrations compiled into this binary.
    pub fn embedded() -> Result<Vec<Self>, SinkError> {
        let mut migrations =
            embedded::EMBEDDED.iter().map(|(name, text)| Self::parse(name, text)).collect::<Result<Vec<_>, _>>()?;
        migrations.sort_by_key(|m| m.version);
        if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
            return Err(SinkError::Migration {
                file: pair[1].name.clone(),
                reason: format!("has the same version as {}", pair[0].name),
            });
        }
        Ok(migrations)
    }
}

/// A guarded statement an older server did not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    /// Its migration's file name.
    pub migration: String,
    /// Its migration's version.
    pub version: u32,
    /// Its position in the file, from 0.
    pub index: u32,
    /// The statement.
    pub statement: Statement,
}

/// What `migrate` found: what is applied and what is pending.
#[derive(Debug)]
pub struct MigrationPlan {
    /// The server's version.
    pub server: ServerVersion,
    /// Already applied, unchanged.
    pub applied: Vec<Migration>,
    /// Not yet applied, in order.
    pub pending: Vec<Migration>,
    /// Guarded statements an older server skipped that this one runs (after a server upgrade).
    pub catch_up: Vec<Deferred>,
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Migrations applied, in order.
    pub applied: Vec<Migration>,
    /// Guarded statements skipped because the server is too old (applied by a later run after
    /// an upgrade).
    pub skipped: Vec<Deferred>,
    /// Statements skipped before that this server ran.
    pub caught_up: Vec<Deferred>,
}

#[derive(Row, Deserialize)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
}

#[derive(Row, serde::Serialize)]
struct RecordRow<'a> {
    version: u32,
    name: &'a str,
    checksum: &'a str,
}

#[derive(Row, Deserialize)]
struct SkippedRow {
    version: u32,
    statement: u32,
}

#[derive(Row, serde::Serialize)]
struct SkipRecord<'a> {
    version: u32,
    name: &'a str,
    statement: u32,
    min_version: String,
    applied: u8,
}

#[derive(Row, Deserialize)]
struct LockRow {
    owner: String,
    since: String,
}

#[derive(Row, serde::Serialize)]
struct LockRecord {
    owner: String,
}

const LOCK_TABLE: &str = "schema_migrations_lock";

/// Applies migrations to one database.
pub struct Migrator {
    config: ClickhouseConfig,
    migrations: Vec<Migration>,
    lock_wait: Duration,
    as_if: Option<ServerVersion>,
}

impl Migrator {
    /// A migrator for the embedded migrations.
    /// With a cluster configured, the migrations translated for it (`clickhouse-schema/cluster/`).
    pub fn new(config: ClickhouseConfig) -> Result<Self, SinkError> {
        let migrations = match config.cluster_name() {
            Some(_) => super::cluster_migrations(&Migration::embedded()?)?,
            None => Migration::embedded()?,
        };
        Ok(Self::with_migrations(config, migrations))
    }

    /// A migrator for the given migrations (tests use their own).
    pub fn with_migrations(config: ClickhouseConfig, migrations: Vec<Migration>) -> Self {
        Self { config, migrations, lock_wait: Duration::from_secs(600), as_if: None }
    }

    /// How long `apply` waits for another migrator's lock before giving up (default 10 min).
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Plans and applies as if the server were `version` (tests use it to play an older server;
    /// the real one then plays the upgraded one).
    pub fn as_if_server(mut self, version: ServerVersion) -> Self {
        self.as_if = Some(version);
        self
    }

    fn failed(&self, file: &str, what: &str, error: clickhouse::error::Error) -> SinkError {
        SinkError::Migration { file: file.to_string(), reason: format!("{what}: {}", self.config.error(error)) }
    }

    /// The statement with the cluster's and database's names filled in (unchanged on one server).
    fn fill(&self, sql: &str) -> String {
        match self.config.cluster_name() {
            Some(cluster) => Placeholders { cluster, database: &self.config.database }.fill(sql),
            None => sql.to_string(),
        }
    }

    /// Runs a statement, with the cluster's and database's names filled in.
    async fn execute(&self, sql: &str) -> Result<(), SinkError> {
        self.config.client().query(&self.fill(sql)).execute().await.map_err(|e| self.config.error(e))
    }

    /// Creates a bookkeeping table: on a cluster `ON CLUSTER`, replicated to every node (one
    /// ZooKeeper path, a replica per node); on one server a plain local table.
    async fn create_bookkeeping(&self, table: &str, columns: &str, order: &str) -> Result<(), SinkError> {
        let sql = match self.config.cluster_name() {
            Some(_) => format!(
                "CREATE TABLE IF NOT EXISTS ${{database}}.{table} ON CLUSTER ${{cluster}} ({columns}) ENGINE = \
                 ReplicatedMergeTree('/clickhouse/runnel/${{database}}/{table}', '{{shard}}-{{replica}}') ORDER BY {order}"
            ),
            None => format!("CREATE TABLE IF NOT EXISTS {table} ({columns}) ENGINE = MergeTree ORDER BY {order}"),
        };
        self.execute(&sql).await
    }

    async fn ensure_bookkeeping(&self) -> Result<(), SinkError> {
        let on_cluster = if self.config.cluster_name().is_some() { " ON CLUSTER ${cluster}" } else { "" };
        let create = self.fill(&format!("CREATE DATABASE IF NOT EXISTS {}{on_cluster}", self.config.database));
        self.config.server_client().query(&create).execute().await.map_err(|e| self.config.error(e))?;
        self.create_bookkeeping(
            "schema_migrations",
            "version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()",
            "version",
        )
        .await?;
        self.create_bookkeeping(
            "schema_skipped",
            "version UInt32, name String, statement UInt32, min_version String, applied UInt8, at DateTime DEFAULT now()",
            "(version, statement)",
        )
        .await
    }

    /// The server's version.
    pub async fn server_version(&self) -> Result<ServerVersion, SinkError> {
        if let Some(version) = self.as_if {
            return Ok(version);
        }
        let text: String = self
            .config
            .server_client()
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| self.config.error(e))?;
        ServerVersion::parse(&text).ok_or_else(|| SinkError::Migration {
            file: "(server)".into(),
            reason: format!("cannot read the server version from `{text}`"),
        })
    }

    /// Compares the files with what the database recorded, without changing anything but the
    /// bookkeeping tables' existence.
    pub async fn plan(&self) -> Result<MigrationPlan, SinkError> {
        self.ensure_bookkeeping().await?;
        let server = self.server_version().await?;
        let client = self.config.client();
        let recorded: Vec<AppliedRow> = client
            .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await
            .map_err(|e| self.config.error(e))?;
        let still_skipped: Vec<SkippedRow> = client
            .query("SELECT version, statement FROM schema_skipped GROUP BY version, statement HAVING max(applied) = 0 ORDER BY version, statement")
            .fetch_all()
            .await
            .map_err(|e| self.config.error(e))?;
        let mut plan = MigrationPlan { server, applied: Vec::new(), pending: Vec::new(), catch_up: Vec::new() };
        for migration in &self.migrations {
            match recorded.iter().find(|r| r.version == migration.version) {
                Some(row) if row.checksum != migration.checksum => {
                    return Err(SinkError::Migration {
                        file: migration.name.clone(),
                        reason: format!(
                            "was edited after it was applied as {} (checksum {} recorded, {} now); add a new migration instead of editing an applied one",
                            row.name, row.checksum, migration.checksum
                        ),
                    });
                }
                Some(_) => plan.applied.push(migration.clone()),
                None => plan.pending.push(migration.clone()),
            }
        }
        for skipped in still_skipped {
            let Some(migration) = plan.applied.iter().find(|m| m.version == skipped.version) else { continue };
            if let Some(statement) = migration.statements.get(skipped.statement as usize)
                && statement.runs_on(server)
            {
                plan.catch_up.push(Deferred {
                    migration: migration.name.clone(),
                    version: migration.version,
                    index: skipped.statement,
                    statement: statement.clone(),
                });
            }
        }
        Ok(plan)
    }

    /// Applies, under the migration lock, the statements an upgraded server can now run and
    /// then every pending migration in order, recording each after its last statement.
    pub async fn apply(&self) -> Result<ApplyReport, SinkError> {
        self.ensure_bookkeeping().await?;
        self.lock().await?;
        let outcome = self.apply_locked().await;
        let released = self.execute(&format!("DROP TABLE IF EXISTS {LOCK_TABLE}")).await;
        let report = outcome?;
        released?;
        Ok(report)
    }

    async fn apply_locked(&self) -> Result<ApplyReport, SinkError> {
        let plan = self.plan().await?;
        let mut report = ApplyReport::default();
        for deferred in plan.catch_up {
            self.execute(&deferred.statement.sql).await.map_err(|e| SinkError::Migration {
                file: deferred.migration.clone(),
                reason: format!("statement {} failed: {e}", deferred.index + 1),
            })?;
            self.record_skip(&deferred, true).await?;
            tracing::info!(migration = %deferred.migration, statement = deferred.index + 1, "guarded statement applied after a server upgrade");
            report.caught_up.push(deferred);
        }
        for migration in plan.pending {
            for (index, statement) in migration.statements.iter().enumerate() {
                if statement.runs_on(plan.server) {
                    self.execute(&statement.sql).await.map_err(|e| SinkError::Migration {
                        file: migration.name.clone(),
                        reason: format!("statement {} failed: {e}", index + 1),
                    })?;
                } else {
                    report.skipped.push(Deferred {
                        migration: migration.name.clone(),
                        version: migration.version,
                        index: index as u32,
                        statement: statement.clone(),
                    });
                }
            }
            for deferred in report.skipped.iter().filter(|d| d.version == migration.version) {
                self.record_skip(deferred, false).await?;
            }
            let mut insert = self
                .config
                .client()
                .insert::<RecordRow<'_>>("schema_migrations")
                .await
                .map_err(|e| self.failed(&migration.name, "recording", e))?;
            insert
                .write(&RecordRow { version: migration.version, name: &migration.name, checksum: &migration.checksum })
                .await
                .map_err(|e| self.failed(&migration.name, "recording", e))?;
            insert.end().await.map_err(|e| self.failed(&migration.name, "recording", e))?;
            tracing::info!(migration = %migration.name, statements = migration.statements.len(), "migration applied");
            report.applied.push(migration);
        }
        Ok(report)
    }

    async fn record_skip(&self, deferred: &Deferred, applied: bool) -> Result<(), SinkError> {
        let record = SkipRecord {
            version: deferred.version,
            name: &deferred.migration,
            statement: deferred.index,
            min_version: deferred.statement.min_version.map(|v| v.to_string()).unwrap_or_default(),
            applied: applied as u8,
        };
        let mut insert = self
            .config
            .client()
            .insert::<SkipRecord<'_>>("schema_skipped")
            .await
            .map_err(|e| self.failed(&deferred.migration, "recording a skipped statement", e))?;
        insert
            .write(&record)
            .await
            .map_err(|e| self.failed(&deferred.migration, "recording a skipped statement", e))?;
        insert.end().await.map_err(|e| self.failed(&deferred.migration, "recording a skipped statement", e))
    }

    /// Takes the migration lock, waiting up to the lock wait for another migrator to finish.
    async fn lock(&self) -> Result<(), SinkError> {
        let started = Instant::now();
        let mut told = Instant::now();
        // On a cluster the lock is one ZooKeeper replica name that only one node can register.
        let engine = match self.config.cluster_name() {
            Some(_) => {
                "ReplicatedMergeTree('/clickhouse/runnel/${database}/schema_migrations_lock', 'holder') ORDER BY tuple()"
            }
            None => "TinyLog",
        };
        let create =
            format!("CREATE TABLE {LOCK_TABLE} (owner String, since DateTime DEFAULT now()) ENGINE = {engine}");
        loop {
            match self.execute(&create).await {
                Ok(()) => break,
                // 57: TABLE_ALREADY_EXISTS (also while another CREATE of it is in flight);
                // 253: REPLICA_IS_ALREADY_EXIST (another node of the cluster holds it).
                Err(error) if ["Code: 57", "Code: 253"].iter().any(|code| error.to_string().contains(code)) => {
                    let holder = self.lock_holder().await;
                    if started.elapsed() >= self.lock_wait {
                        return Err(SinkError::Migration {
                            file: "(lock)".into(),
                            reason: format!(
                                "another migration holds the lock ({holder}) after {} s of waiting; if no `runnel migrate` is running, release it with `runnel migrate --unlock`",
                                started.elapsed().as_secs()
                            ),
                        });
                    }
                    if told.elapsed() >= Duration::from_secs(10) {
                        tracing::info!(%holder, "waiting for another migration to finish");
                        told = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
        let owner = format!(
            "{} pid {}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown host".into()),
            std::process::id()
        );
        let mut insert =
            self.config.client().insert::<LockRecord>(LOCK_TABLE).await.map_err(|e| self.config.error(e))?;
        insert.write(&LockRecord { owner }).await.map_err(|e| self.config.error(e))?;
        insert.end().await.map_err(|e| self.config.error(e))
    }

    async fn lock_holder(&self) -> String {
        let rows: Result<Vec<LockRow>, _> = self
            .config
            .client()
            .query(&format!("SELECT owner, toString(since) AS since_text FROM {LOCK_TABLE}"))
            .fetch_all()
            .await;
        match (rows, self.config.cluster_name()) {
            (Ok(rows), _) if !rows.is_empty() => format!("held by {} since {}", rows[0].owner, rows[0].since),
            // The lock table lives on the node that took it.
            (Err(_), Some(cluster)) => format!("held through another node of cluster {cluster}"),
            _ => "just taken".into(),
        }
    }

    /// Releases a lock left by a migrator that died; returns who held it.
    pub async fn unlock(&self) -> Result<Option<String>, SinkError> {
        self.ensure_bookkeeping().await?;
        let exists: u8 = self
            .config
            .client()
            .query("SELECT toUInt8(count()) FROM system.tables WHERE database = currentDatabase() AND name = ?")
            .bind(LOCK_TABLE)
            .fetch_one()
            .await
            .map_err(|e| self.config.error(e))?;
        if exists == 0 {
            return Ok(None);
        }
        let holder = self.lock_holder().await;
        self.execute(&format!("DROP TABLE IF EXISTS {LOCK_TABLE}")).await?;
        Ok(Some(holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_statements_without_comments() {
        let m = Migration::parse("0007_x.sql", "-- a comment; with a semicolon\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n").unwrap();
        assert_eq!(m.version, 7);
        assert_eq!(m.statements.len(), 2);
        assert!(m.statements[0].sql.starts_with("CREATE TABLE a"));
        assert!(m.statements.iter().all(|s| s.min_version.is_none()));
    }

    #[test]
    fn a_guard_applies_to_the_next_statement_only() {
        let m = Migration::parse(
            "0008_x.sql",
            "CREATE TABLE a (x UInt8) ENGINE = Memory;\n-- Needs a newer server.\n-- min-version: 19.9\nALTER TABLE a\n    MODIFY COLUMN x LowCardinality(String);\nSELECT 1;\n",
        )
        .unwrap();
        let guards: Vec<_> = m.statements.iter().map(|s| s.min_version).collect();
        assert_eq!(guards, vec![None, Some(ServerVersion(19, 9)), None]);
        assert!(!m.statements[1].runs_on(ServerVersion(18, 16)));
        assert!(m.statements[1].runs_on(ServerVersion(19, 9)));
        assert!(m.statements[1].runs_on(ServerVersion(25, 3)));
        assert!(m.statements[1].sql.starts_with("ALTER TABLE a\n    MODIFY"), "{:?}", m.statements[1].sql);
    }

    #[test]
    fn malformed_guards_are_refused_with_their_line() {
        let error = Migration::parse("0009_x.sql", "-- min-version: nineteen\nSELECT 1;").unwrap_err().to_string();
        assert!(error.contains("0009_x.sql") && error.contains("line 1") && error.contains("nineteen"), "{error}");
        let error = Migration::parse("0009_x.sql", "SELECT\n-- min-version: 19.9\n1;").unwrap_err().to_string();
        assert!(error.contains("line 2") && error.contains("before a statement"), "{error}");
        let error = Migration::parse("0009_x.sql", "SELECT 1;\n-- min-version: 19.9\n").unwrap_err().to_string();
        assert!(error.contains("guards no statement"), "{error}");
    }

    #[test]
    fn server_versions_compare_numerically() {
        assert_eq!(ServerVersion::parse("18.16.1"), Some(ServerVersion(18, 16)));
        assert_eq!(ServerVersion::parse("26.9.2.1"), Some(ServerVersion(26, 9)));
        assert!(ServerVersion(18, 16) < ServerVersion(19, 9));
        assert!(ServerVersion(19, 10) > ServerVersion(19, 9));
        assert_eq!(ServerVersion::parse("x"), None);
    }

    #[test]
    fn a_file_without_a_version_number_is_refused() {
        let error = Migration::parse("clicks.sql", "SELECT 1;").unwrap_err().to_string();
        assert!(error.contains("clicks.sql") && error.contains("version"), "{error}");
    }

    #[test]
    fn the_embedded_schema_parses_and_starts_with_the_clicks_table() {
        let migrations = Migration::embedded().unwrap();
        assert_eq!(migrations[0].version, 1);
        assert!(migrations[0].statements.iter().any(|s| s.sql.contains("CREATE TABLE IF NOT EXISTS clicks")));
    }

    /// The processors' INSERTs carry deduplication tokens on current servers (0009): every
    /// table such an INSERT writes, the raw ones and each view's, needs a deduplication log
    /// there, or a retried INSERT is stored in it twice.
    #[test]
    fn every_table_a_processor_insert_writes_keeps_a_deduplication_log_on_current_servers() {
        let statements: Vec<Statement> =
            Migration::embedded().unwrap().into_iter().flat_map(|m| m.statements).collect();
        let mut written = std::collections::BTreeSet::from(["clicks".to_string(), "orders".to_string()]);
        for statement in &statements {
            if let Some((_, target)) = statement.sql.split_once(" TO ") {
                let name: String = target.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                written.insert(name);
            }
        }
        assert!(written.contains("product_key_sales_daily") && written.contains("kafka_offsets"), "{written:?}");
        let guard = ServerVersion::parse("24.8").unwrap();
        let missing: Vec<&String> = written
            .iter()
            .filter(|table| {
                !statements.iter().any(|s| {
                    s.min_version == Some(guard)
                        && s.sql
                            == format!("ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = 1000")
                })
            })
            .collect();
        assert!(missing.is_empty(), "tables without a deduplication window on current servers: {missing:?}");
    }
}
