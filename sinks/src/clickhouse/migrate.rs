//! Schema migrations: the numbered `.sql` files of `clickhouse-schema/`, applied in order and
//! recorded with their checksums in `schema_migrations`.
//!
//! An applied file that was edited afterwards is refused rather than silently skipped: the
//! database would no longer match the files.

use clickhouse::Row;
use serde::Deserialize;

use super::ClickhouseConfig;
use crate::SinkError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
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
    /// The statements, in order, without comments.
    pub statements: Vec<String>,
}

impl Migration {
    /// Parses a file: `NNNN_name.sql` with statements ending in `;`.
    pub fn parse(name: &str, text: &str) -> Result<Self, SinkError> {
        let bad = |reason: &str| SinkError::Migration { file: name.to_string(), reason: reason.to_string() };
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        let version =
            digits.parse().map_err(|_| bad("file name must start with its version number, e.g. 0001_clicks.sql"))?;
        let without_comments: String =
            text.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        let statements: Vec<String> =
            without_comments.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
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

/// What `migrate` found: what is applied and what is pending.
#[derive(Debug)]
pub struct MigrationPlan {
    /// Already applied, unchanged.
    pub applied: Vec<Migration>,
    /// Not yet applied, in order.
    pub pending: Vec<Migration>,
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

/// Applies migrations to one database.
pub struct Migrator {
    config: ClickhouseConfig,
    migrations: Vec<Migration>,
}

impl Migrator {
    /// A migrator for the embedded migrations.
    pub fn new(config: ClickhouseConfig) -> Result<Self, SinkError> {
        Ok(Self::with_migrations(config, Migration::embedded()?))
    }

    /// A migrator for the given migrations (tests use their own).
    pub fn with_migrations(config: ClickhouseConfig, migrations: Vec<Migration>) -> Self {
        Self { config, migrations }
    }

    async fn ensure_bookkeeping(&self) -> Result<(), SinkError> {
        let server = self.config.server_client();
        server
            .query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.config.database))
            .execute()
            .await
            .map_err(|e| self.config.error(e))?;
        self.config
            .client()
            .query("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version")
            .execute()
            .await
            .map_err(|e| self.config.error(e))
    }

    /// Compares the files with what the database recorded, without changing anything but the
    /// bookkeeping table's existence.
    pub async fn plan(&self) -> Result<MigrationPlan, SinkError> {
        self.ensure_bookkeeping().await?;
        let recorded: Vec<AppliedRow> = self
            .config
            .client()
            .query("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
            .fetch_all()
            .await
            .map_err(|e| self.config.error(e))?;
        let mut plan = MigrationPlan { applied: Vec::new(), pending: Vec::new() };
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
        Ok(plan)
    }

    /// Applies every pending migration in order, recording each after its last statement.
    /// Returns the migrations it applied.
    pub async fn apply(&self) -> Result<Vec<Migration>, SinkError> {
        let plan = self.plan().await?;
        let client = self.config.client();
        for migration in &plan.pending {
            for statement in &migration.statements {
                client.query(statement).execute().await.map_err(|e| SinkError::Migration {
                    file: migration.name.clone(),
                    reason: format!("statement failed: {}", self.config.error(e)),
                })?;
            }
            let mut insert =
                client.insert::<RecordRow<'_>>("schema_migrations").await.map_err(|e| self.config.error(e))?;
            insert
                .write(&RecordRow { version: migration.version, name: &migration.name, checksum: &migration.checksum })
                .await
                .map_err(|e| self.config.error(e))?;
            insert.end().await.map_err(|e| self.config.error(e))?;
            tracing::info!(migration = %migration.name, statements = migration.statements.len(), "migration applied");
        }
        Ok(plan.pending)
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
        assert!(m.statements[0].starts_with("CREATE TABLE a"));
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
        assert!(migrations[0].statements.iter().any(|s| s.contains("CREATE TABLE IF NOT EXISTS clicks")));
    }
}
