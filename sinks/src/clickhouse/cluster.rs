//! The cluster schema: the single-server migrations of `clickhouse-schema/` translated for a
//! sharded, replicated cluster, so there is one schema to maintain (docs/cluster.md).
//!
//! Each table `t` becomes `t_local` on every node (`Replicated*MergeTree`, one ZooKeeper path
//! per shard) and a `Distributed` table `t` over them, so readers and writers keep using `t`.
//! Materialized views read `*_local` and write `*_local` on the node the rows landed on;
//! backfill `INSERT … SELECT` statements run through the `Distributed` tables; every DDL runs
//! `ON CLUSTER`. `ALTER`s change `t_local` and then recreate `t` (a `Distributed` table has no
//! data of its own; an `ALTER … ON CLUSTER` of one is refused on clusters with replicated shards).
//!
//! The translation writes `${cluster}` and `${database}` where the cluster's and database's
//! names go (every DDL names its tables with the database: a node runs `ON CLUSTER` DDL in
//! its default database); [`Placeholders::fill`] substitutes them when the statements run. `{shard}` and
//! `{replica}` are the servers' own macros. `clickhouse-schema/cluster/` holds the translated
//! files (`runnel schema --write-cluster`), kept equal to this translation by a test.

use std::collections::BTreeMap;

use super::migrate::Migration;
use crate::SinkError;

/// How the raw tables are sharded. Rows of one Kafka partition stay on one shard, beside their
/// offset fence (`kafka_offsets` is written by the same INSERT on that shard): a crash between
/// shards can never leave a fence claiming rows another shard lost. A link's versions stay
/// together so `ReplacingMergeTree` can replace them.
const SHARDING: &[(&str, &str)] = &[("clicks", "kafka_partition"), ("orders", "kafka_partition"), ("links", "link_id")];

/// Substitutes the names the translated statements leave open.
#[derive(Clone, Debug)]
pub struct Placeholders<'a> {
    /// The cluster's name in the servers' `remote_servers`.
    pub cluster: &'a str,
    /// Runnel's database.
    pub database: &'a str,
}

impl Placeholders<'_> {
    /// The statement with `${cluster}` and `${database}` filled in.
    pub fn fill(&self, sql: &str) -> String {
        sql.replace("${cluster}", self.cluster).replace("${database}", self.database)
    }
}

/// Translates migrations, in order (later `ALTER`s need the tables earlier files created).
pub fn clusterize(migrations: &[Migration]) -> Result<Vec<(String, String)>, SinkError> {
    let mut tables = BTreeMap::new();
    migrations.iter().map(|m| Ok((m.name.clone(), translate_file(m, &mut tables)?))).collect()
}

/// The cluster migrations, parsed (what `runnel migrate` applies when a cluster is configured).
pub fn cluster_migrations(migrations: &[Migration]) -> Result<Vec<Migration>, SinkError> {
    clusterize(migrations)?.iter().map(|(name, text)| Migration::parse(name, text)).collect()
}

fn translate_file(migration: &Migration, tables: &mut BTreeMap<String, String>) -> Result<String, SinkError> {
    let mut out = format!(
        "-- {name} for a cluster: generated from clickhouse-schema/{name} by `runnel schema --write-cluster`;\n\
         -- edit the single-server file, not this one (docs/cluster.md).\n",
        name = migration.name
    );
    for (index, statement) in migration.statements.iter().enumerate() {
        let translated = translate(&statement.sql, tables).map_err(|reason| SinkError::Migration {
            file: migration.name.clone(),
            reason: format!("statement {} has no cluster translation: {reason}", index + 1),
        })?;
        for sql in translated {
            out.push('\n');
            if let Some(min) = statement.min_version {
                out.push_str(&format!("-- min-version: {min}\n"));
            }
            out.push_str(&sql);
            out.push_str(";\n");
        }
    }
    Ok(out)
}

fn distributed(name: &str, key: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS ${{database}}.{name} ON CLUSTER ${{cluster}} AS ${{database}}.{name}_local\n\
         ENGINE = Distributed(${{cluster}}, ${{database}}, {name}_local, {key})"
    )
}

/// The first word of `text` (an identifier) and what follows it.
fn word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

fn translate(sql: &str, tables: &mut BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let create_table = sql.strip_prefix("CREATE TABLE IF NOT EXISTS ").or_else(|| sql.strip_prefix("CREATE TABLE "));
    if let Some(rest) = create_table {
        let (name, body) = word(rest);
        let engine_at = body.find("ENGINE = ").ok_or("a CREATE TABLE without `ENGINE = `")?;
        let (engine, after) = word(&body[engine_at + "ENGINE = ".len()..]);
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return Err(format!("engine {engine} (only the *MergeTree family is translated)"));
        }
        let zk = format!("'/clickhouse/tables/{{shard}}/${{database}}/{name}_local', '{{replica}}'");
        let (args, tail) = match after.strip_prefix('(') {
            Some(inner) => {
                let close = inner.find(')').ok_or("unbalanced engine arguments")?;
                let args = inner[..close].trim();
                (if args.is_empty() { zk } else { format!("{zk}, {args}") }, &inner[close + 1..])
            }
            None => (zk, after),
        };
        let key = SHARDING.iter().find(|(t, _)| *t == name).map_or("rand()", |(_, k)| k);
        tables.insert(name.to_string(), key.to_string());
        let local = format!(
            "CREATE TABLE IF NOT EXISTS ${{database}}.{name}_local ON CLUSTER ${{cluster}}{columns}ENGINE = Replicated{engine}({args}){tail}",
            columns = &body[..engine_at],
        );
        return Ok(vec![local, distributed(name, key)]);
    }
    if let Some(rest) = sql.strip_prefix("CREATE MATERIALIZED VIEW IF NOT EXISTS ") {
        let (view, rest) = word(rest);
        let rest = rest.trim_start().strip_prefix("TO ").ok_or("a materialized view without `TO table`")?;
        let (target, query) = word(rest);
        if !tables.contains_key(target) {
            return Err(format!("view {view} writes {target}, which no earlier statement created"));
        }
        return Ok(vec![format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ${{database}}.{view} ON CLUSTER ${{cluster}} TO ${{database}}.{target}_local{}",
            local_sources(query, tables)?
        )]);
    }
    if let Some(rest) = sql.strip_prefix("ALTER TABLE ") {
        let (name, changes) = word(rest);
        let key = tables.get(name).ok_or_else(|| format!("ALTER of {name}, which no earlier statement created"))?;
        // A table setting is the local table's alone: the Distributed one stays.
        if changes.trim_start().starts_with("MODIFY SETTING ") {
            return Ok(vec![format!("ALTER TABLE ${{database}}.{name}_local ON CLUSTER ${{cluster}}{changes}")]);
        }
        return Ok(vec![
            format!("ALTER TABLE ${{database}}.{name}_local ON CLUSTER ${{cluster}}{changes}"),
            format!("DROP TABLE IF EXISTS ${{database}}.{name} ON CLUSTER ${{cluster}}"),
            distributed(name, key),
        ]);
    }
    if let Some(rest) = sql.strip_prefix("DROP TABLE IF EXISTS ") {
        let (name, tail) = word(rest);
        if !tail.trim().is_empty() {
            return Err(format!("DROP of {name} with `{}`", tail.trim()));
        }
        let drop = |name: &str| format!("DROP TABLE IF EXISTS ${{database}}.{name} ON CLUSTER ${{cluster}}");
        if tables.remove(name).is_some() {
            // A table is a Distributed one over a local one on every node: both go.
            return Ok(vec![drop(name), drop(&format!("{name}_local"))]);
        }
        return Ok(vec![drop(name)]);
    }
    if sql.starts_with("INSERT INTO ") {
        // Through the Distributed tables (the migrator inserts with insert_distributed_sync).
        return Ok(vec![sql.to_string()]);
    }
    Err(format!("`{}` statements", sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")))
}

/// The query with each `FROM table` of a known table read from `table_local`.
fn local_sources(query: &str, tables: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = query;
    let mut found = false;
    while let Some(at) = rest.find("FROM ") {
        let (before, after) = rest.split_at(at + "FROM ".len());
        out.push_str(before);
        let (source, tail) = word(after);
        if tables.contains_key(source) {
            out.push_str("${database}.");
            out.push_str(source);
            out.push_str("_local");
            found = true;
        } else {
            out.push_str(source);
        }
        rest = tail;
    }
    out.push_str(rest);
    if found { Ok(out) } else { Err("a materialized view reading no table of the schema".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Vec<String> {
        let mut tables = BTreeMap::new();
        translate("CREATE TABLE IF NOT EXISTS clicks (a UInt64) ENGINE = MergeTree ORDER BY a", &mut tables).unwrap();
        translate(sql, &mut tables).unwrap()
    }

    #[test]
    fn tables_become_replicated_local_tables_under_a_distributed_one() {
        let mut tables = BTreeMap::new();
        let out = translate(
            "CREATE TABLE IF NOT EXISTS links\n(\n    link_id UInt64\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY link_id",
            &mut tables,
        )
        .unwrap();
        assert_eq!(
            out[0],
            "CREATE TABLE IF NOT EXISTS ${database}.links_local ON CLUSTER ${cluster}\n(\n    link_id UInt64\n)\nENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/links_local', '{replica}', version)\nORDER BY link_id"
        );
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS ${database}.links ON CLUSTER ${cluster} AS ${database}.links_local\nENGINE = Distributed(${cluster}, ${database}, links_local, link_id)"
        );
    }

    #[test]
    fn views_read_and_write_the_local_tables() {
        let out = one("CREATE MATERIALIZED VIEW IF NOT EXISTS v TO clicks AS\nSELECT a FROM clicks\nGROUP BY a");
        assert_eq!(
            out,
            [
                "CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.v ON CLUSTER ${cluster} TO ${database}.clicks_local AS\nSELECT a FROM ${database}.clicks_local\nGROUP BY a"
            ]
        );
    }

    #[test]
    fn alters_change_the_local_table_and_recreate_the_distributed_one() {
        let settings = one("ALTER TABLE clicks MODIFY SETTING non_replicated_deduplication_window = 1000");
        assert_eq!(
            settings,
            vec![
                "ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000"
            ],
            "a setting changes the local table only"
        );
        let out = one("ALTER TABLE clicks ADD COLUMN b String");
        assert_eq!(out[0], "ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster} ADD COLUMN b String");
        assert_eq!(out[1], "DROP TABLE IF EXISTS ${database}.clicks ON CLUSTER ${cluster}");
        assert!(out[2].contains("Distributed(${cluster}, ${database}, clicks_local, kafka_partition)"), "{}", out[2]);
    }

    #[test]
    fn unknown_statements_and_tables_are_refused() {
        let mut tables = BTreeMap::new();
        assert!(translate("DROP TABLE clicks", &mut tables).unwrap_err().contains("DROP TABLE"));
        translate("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a", &mut tables).unwrap();
        assert_eq!(
            translate("DROP TABLE IF EXISTS t_mv", &mut tables).unwrap(),
            ["DROP TABLE IF EXISTS ${database}.t_mv ON CLUSTER ${cluster}"]
        );
        assert_eq!(
            translate("DROP TABLE IF EXISTS t", &mut tables).unwrap(),
            [
                "DROP TABLE IF EXISTS ${database}.t ON CLUSTER ${cluster}",
                "DROP TABLE IF EXISTS ${database}.t_local ON CLUSTER ${cluster}"
            ],
            "a table goes with its local tables"
        );
        assert!(
            translate("ALTER TABLE t ADD COLUMN b String", &mut tables).unwrap_err().contains("no earlier"),
            "t is gone"
        );
        assert!(translate("DROP TABLE IF EXISTS t SYNC", &mut tables).unwrap_err().contains("SYNC"));
        assert!(translate("ALTER TABLE nope ADD COLUMN b String", &mut tables).unwrap_err().contains("nope"));
        assert!(translate("CREATE TABLE t (a UInt8) ENGINE = Memory", &mut tables).unwrap_err().contains("Memory"));
    }

    #[test]
    fn placeholders_are_filled() {
        let p = Placeholders { cluster: "prod", database: "runnel" };
        assert_eq!(p.fill("ON CLUSTER ${cluster} '/x/${database}/t'"), "ON CLUSTER prod '/x/runnel/t'");
    }

    /// `clickhouse-schema/cluster/` is the translation of today's files; regenerate it with
    /// `runnel schema --write-cluster clickhouse-schema/cluster` after changing a migration.
    #[test]
    fn the_checked_in_cluster_files_are_the_translation_of_the_schema() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../clickhouse-schema/cluster");
        let migrations = Migration::embedded().unwrap();
        for (name, text) in clusterize(&migrations).unwrap() {
            let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            assert!(
                on_disk == text,
                "clickhouse-schema/cluster/{name} is not the translation of clickhouse-schema/{name}; run `runnel schema --write-cluster clickhouse-schema/cluster`"
            );
        }
    }
}
