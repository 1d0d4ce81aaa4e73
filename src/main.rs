//! `runnel`: parse the subcommand and its configuration, start logging, run, wait for shutdown.
//! Everything else lives in the workspace's libraries.

use std::process::ExitCode;

/// mimalloc: the edge allocates a little per request (headers, the click's JSON); glibc's
/// malloc and free took about 5% of its CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Runnel: click and order analytics — redirect edge, Kafka processors, ClickHouse and Redis.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, env = "RUNNEL_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve redirects, the link API, reports, /healthz and /readyz (and /metrics on its own
    /// address).
    Edge(ingest::EdgeConfig),
    /// Run the consumer-group pipelines.
    Process(processors::ProcessConfig),
    /// Apply pending ClickHouse migrations.
    Migrate {
        /// Show the pending statements without applying them.
        #[arg(long)]
        print: bool,
        /// Release the migration lock left by a `runnel migrate` that died, then stop.
        #[arg(long, conflicts_with = "print")]
        unlock: bool,
        /// How long to wait for another `runnel migrate` holding the lock.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        lock_wait: u64,
        #[command(flatten)]
        clickhouse: sinks::clickhouse::ClickhouseConfig,
    },
    /// Print the schema's statements for a server version as a JSON list (no server needed):
    /// what `runnel migrate` runs on a fresh database of that version.
    Schema {
        /// Server version, e.g. 18.16 or 25.8.
        #[arg(long, default_value = "18.16")]
        server: String,
        /// The cluster schema instead, with this cluster's name filled in (docs/cluster.md).
        #[arg(long)]
        cluster: Option<String>,
        /// Write the cluster schema's files (with `${cluster}` and `${database}` left open) into
        /// this directory, one per migration: `clickhouse-schema/cluster/` is made this way.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["cluster"])]
        write_cluster: Option<std::path::PathBuf>,
    },
    /// Run a report: top-links, sales, top-products, customers, conversions, live, or link
    /// (with --link CODE, and --dimension for a breakdown).
    Report(ReportArgs),
    /// List each closed UTC day's leading links for the top-links report (days never listed, or
    /// that took clicks since) and those of the current day's closed hours, new customers per
    /// hour and active customers per day for the customers report, and each link's counts of
    /// each closed UTC day for link series (docs/reports.md, "Top lists", "New customers", "Link
    /// days"). The clicks processors run it too.
    Rollup {
        /// How many days before today to look at.
        #[arg(long, default_value_t = sinks::reports::leaders::DEFAULT_DAYS)]
        days: u32,
        #[command(flatten)]
        clickhouse: sinks::clickhouse::ClickhouseConfig,
    },
    /// Print a topic's events as NDJSON, one line each (compact click batches decoded), from the
    /// start of each partition to where it ends now.
    Dump {
        /// clicks, orders or links.
        topic: processors::DumpTopic,
        /// Keep printing events as they arrive (until Ctrl-C).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        kafka: events::kafka::KafkaConfig,
    },
    /// Create the Kafka topics that are missing and check those that exist.
    Topics(events::kafka::KafkaConfig),
    /// Manage the link index.
    Links {
        #[command(subcommand)]
        command: LinksCommand,
    },
    /// Make a new API key: prints the key (give it to the client) and the `RUNNEL_API_KEYS`
    /// entry that admits it (only its hash is configured).
    ApiKey {
        /// Name of the key's holder (shows in logs and rate limits).
        #[arg(long, default_value = "default")]
        name: String,
        /// Scopes, `+` separated: links:read, links:write, orders:write, reports:read.
        #[arg(long, default_value = "links:read+links:write+orders:write+reports:read")]
        scopes: String,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// top-links, sales, top-products, customers, conversions, live, link.
    name: String,
    /// The link's code (report `link`).
    #[arg(long)]
    link: Option<String>,
    /// The link's id instead of its code (report `link`; no link index needed).
    #[arg(long, conflicts_with = "link")]
    link_id: Option<u64>,
    /// Break the link's clicks down by country, device, browser, os, referrer or channel.
    #[arg(long)]
    dimension: Option<String>,
    /// First day, YYYY-MM-DD (default: 29 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// Last day, inclusive (default: today in --tz).
    #[arg(long)]
    to: Option<String>,
    /// Instead of --from: the last N days up to --to.
    #[arg(long)]
    days: Option<u32>,
    /// IANA time zone of the days.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// Series buckets: hour, day, week, month.
    #[arg(long)]
    interval: Option<String>,
    /// Rows of a top list.
    #[arg(long)]
    limit: Option<u32>,
    /// Output: table, csv, json or arrow (Arrow IPC stream on stdout).
    #[arg(long, default_value = "table")]
    format: ReportFormat,
    /// Print the report's SQL instead of running it.
    #[arg(long)]
    print_sql: bool,
    #[command(flatten)]
    clickhouse: sinks::clickhouse::ClickhouseConfig,
    #[command(flatten)]
    redis: sinks::redis::RedisConfig,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
    Arrow,
}

#[derive(Subcommand)]
enum LinksCommand {
    /// Replay the compacted links topic into the Redis link index (after a Redis loss, or
    /// into a new Redis); versions already there are kept when newer.
    Rebuild {
        #[command(flatten)]
        kafka: events::kafka::KafkaConfig,
        #[command(flatten)]
        redis: sinks::redis::RedisConfig,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain names the service and the step; no backtrace for expected failures.
            eprintln!("runnel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Edge(config) => {
            let listener = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("cannot listen on RUNNEL_EDGE_ADDR={}", config.addr))?;
            let metrics = tokio::net::TcpListener::bind(config.metrics_addr)
                .await
                .with_context(|| format!("cannot listen on RUNNEL_EDGE_METRICS_ADDR={}", config.metrics_addr))?;
            ingest::run(listener, metrics, config, prometheus()?, shutdown_signal()).await?;
        }
        Command::Process(config) => processors::run(config, prometheus()?, shutdown_signal()).await?,
        Command::Migrate { print, unlock, lock_wait, clickhouse } => {
            migrate(clickhouse, print, unlock, lock_wait).await?
        }
        Command::Schema { server, cluster, write_cluster } => {
            use sinks::clickhouse::{Migration, Placeholders, cluster_migrations, clusterize};
            let version = sinks::clickhouse::ServerVersion::parse(&server)
                .with_context(|| format!("--server: `{server}` is not a version like 18.16"))?;
            if let Some(dir) = write_cluster {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                for (name, text) in clusterize(&Migration::embedded()?)? {
                    let path = dir.join(&name);
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    println!("{}", path.display());
                }
                return Ok(());
            }
            let migrations = match &cluster {
                Some(_) => cluster_migrations(&Migration::embedded()?)?,
                None => Migration::embedded()?,
            };
            let statements: Vec<String> = migrations
                .into_iter()
                .flat_map(|m| m.statements)
                .filter(|s| s.runs_on(version))
                .map(|s| match &cluster {
                    Some(cluster) => Placeholders { cluster, database: "runnel" }.fill(&s.sql),
                    None => s.sql,
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&statements)?);
        }
        Command::Report(args) => report(args).await?,
        Command::Rollup { days, clickhouse } => {
            clickhouse.validate()?;
            let started = std::time::Instant::now();
            let now = jiff::Timestamp::now();
            use sinks::reports::Progress;
            let sinks::reports::RolledUp { links: done, customers, link_days } =
                sinks::reports::rollup(&clickhouse, now, days, |step| match step {
                    Progress::Listed(day, links) => eprintln!("… listed {day}: {links} links"),
                    Progress::Rolled(day, clicks) => {
                        eprintln!("… rolled up {day}: each link's counts of {clicks} clicks")
                    }
                })
                .await?;
            println!(
                "leading links: {} days with clicks: {} listed now, {} already current, {} took clicks while listed (next run lists them)",
                done.days,
                done.listed.len(),
                done.current,
                done.changing.len(),
            );
            if let Some((span, links)) = done.first_hours {
                println!("leading links of today's closed hours ({span}): {links} links listed now");
            }
            use sinks::reports::new_customers::Refreshed;
            let customers = match customers {
                Refreshed::Current => "already current",
                Refreshed::Listed => "listed now",
                Refreshed::Changing => "took paid orders while listed (next run lists them)",
            };
            println!("new customers per hour: {customers}");
            println!(
                "each link's counts by day: {} days with clicks: {} rolled up now, {} already current, {} took clicks while rolled up (next run rolls them)",
                link_days.days,
                link_days.rolled.len(),
                link_days.current,
                link_days.changing.len(),
            );
            println!("in {:.1} s", started.elapsed().as_secs_f64());
        }
        Command::Links { command: LinksCommand::Rebuild { kafka, redis } } => {
            redis.validate()?;
            let report = processors::rebuild_links(&kafka, &redis, |r| {
                eprintln!("… {} link events read, {} written", r.read, r.written)
            })
            .await?;
            println!(
                "links rebuilt: {} events read, {} versions written to the index, {} undecodable skipped",
                report.read, report.written, report.undecodable
            );
        }
        Command::ApiKey { name, scopes } => {
            use rand::Rng;
            const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
            let mut rng = rand::rng();
            let random: String = (0..40).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
            let key = format!("rk_{random}");
            let entry = format!("{name}:{}:{scopes}", ingest::hash_key(&key));
            // Check the entry the way the edge will read it.
            ingest::validate_api_keys(&entry)?;
            println!("key:   {key}\nentry: {entry}");
            println!(
                "\nAdd the entry to RUNNEL_API_KEYS (comma separated); send the key as `Authorization: Bearer {key}`."
            );
        }
        Command::Dump { topic, follow, kafka } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let report = tokio::select! {
                report = processors::dump(&kafka, topic, follow, &mut out) => report,
                () = shutdown_signal() => Ok(processors::DumpReport::default()),
            };
            match report {
                Ok(report) if report.undecodable > 0 => {
                    eprintln!("{} of {} messages did not decode (named above)", report.undecodable, report.messages)
                }
                Ok(_) => {}
                // `runnel dump clicks | head`: the reader has what it wanted.
                Err(processors::ProcessError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(error) => return Err(error.into()),
            }
        }
        Command::Topics(kafka) => {
            for (spec, outcome) in events::kafka::ensure_topics(&kafka).await? {
                let configs: Vec<String> = spec.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{:<24} {:>3} partitions  {:<8} {}",
                    spec.name,
                    spec.partitions,
                    format!("{outcome:?}").to_lowercase(),
                    configs.join(" ")
                );
            }
        }
    }
    Ok(())
}

async fn migrate(
    config: sinks::clickhouse::ClickhouseConfig,
    print: bool,
    unlock: bool,
    lock_wait: u64,
) -> anyhow::Result<()> {
    config.validate()?;
    let migrator =
        sinks::clickhouse::Migrator::new(config.clone())?.lock_wait(std::time::Duration::from_secs(lock_wait));
    if unlock {
        match migrator.unlock().await? {
            Some(holder) => println!("released the migration lock ({holder})"),
            None => println!("no migration lock in database {}", config.database),
        }
        return Ok(());
    }
    if print {
        let plan = migrator.plan().await?;
        println!(
            "-- {} applied, {} pending in database {} (server {})",
            plan.applied.len(),
            plan.pending.len(),
            config.database,
            plan.server
        );
        for deferred in &plan.catch_up {
            println!("-- {} statement {}, skipped before, runs on this server", deferred.migration, deferred.index + 1);
            println!("{};\n", deferred.statement.sql);
        }
        for migration in &plan.pending {
            println!("-- {}", migration.name);
            for statement in &migration.statements {
                if statement.runs_on(plan.server) {
                    println!("{};\n", statement.sql);
                } else {
                    let min = statement.min_version.map(|v| v.to_string()).unwrap_or_default();
                    println!("-- skipped on {} (needs {min}): {}\n", plan.server, statement.sql.replace('\n', " "));
                }
            }
        }
        return Ok(());
    }
    let report = migrator.apply().await?;
    for deferred in &report.caught_up {
        println!(
            "applied {} statement {} (skipped before; this server runs it)",
            deferred.migration,
            deferred.index + 1
        );
    }
    for migration in &report.applied {
        println!("applied {}", migration.name);
    }
    for deferred in &report.skipped {
        let min = deferred.statement.min_version.map(|v| v.to_string()).unwrap_or_default();
        println!(
            "skipped {} statement {}: needs ClickHouse {min}; `runnel migrate` applies it after an upgrade",
            deferred.migration,
            deferred.index + 1
        );
    }
    if report.applied.is_empty() && report.caught_up.is_empty() {
        println!("database {} is up to date", config.database);
    }
    Ok(())
}

async fn report(args: ReportArgs) -> anyhow::Result<()> {
    use sinks::reports::{self, Report, ReportParams};
    let params = ReportParams {
        from: args.from,
        to: args.to,
        tz: Some(args.tz),
        interval: args.interval,
        limit: args.limit,
        days: args.days,
        format: None,
    };
    let now = jiff::Timestamp::now();
    let table = if args.name == "live" {
        args.redis.validate()?;
        let conn = args.redis.connect().await?;
        reports::live(&sinks::redis::Counters::new(args.redis.clone(), conn, 0), now).await?
    } else {
        let report = if args.name == "link" {
            let link_id = match (args.link_id, &args.link) {
                (Some(id), _) => id,
                (None, Some(code)) => {
                    args.redis.validate()?;
                    let index = sinks::redis::LinkIndex::new(args.redis.clone(), args.redis.connect().await?);
                    index.get(code).await?.with_context(|| format!("--link: no link `{code}`"))?.link_id
                }
                (None, None) => anyhow::bail!("report `link` needs --link CODE or --link-id N"),
            };
            match &args.dimension {
                Some(dimension) => Report::breakdown(link_id, dimension)?,
                None => Report::LinkSeries { link_id },
            }
        } else {
            Report::named(&args.name).with_context(|| {
                format!("no report `{}`; reports: link, live, {}", args.name, reports::NAMES.join(", "))
            })?
        };
        let plan = report.plan(&params, now)?;
        if args.print_sql {
            println!("{}", plan.sql);
            return Ok(());
        }
        args.clickhouse.validate()?;
        plan.run(&args.clickhouse).await?
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Table => out.write_all(reports::to_text(&table).as_bytes())?,
        ReportFormat::Csv => out.write_all(reports::to_csv(&table).as_bytes())?,
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&reports::to_json(&table, None))?)?,
        ReportFormat::Arrow => out.write_all(&reports::to_arrow(&table)?)?,
    }
    Ok(())
}

/// Installs the Prometheus recorder; latency histograms get buckets, everything else is plain.
fn prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        )?
        .set_buckets_for_metric(
            Matcher::Suffix("_bytes".into()),
            &[1024.0, 16_384.0, 131_072.0, 1_048_576.0, 4_194_304.0, 16_777_216.0, 67_108_864.0],
        )?
        .set_buckets_for_metric(
            Matcher::Suffix("_rows".into()),
            &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 50_000.0, 100_000.0],
        )?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let upkeep = handle.clone();
    // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, … (docs/metrics.md).
    let process = metrics_process::Collector::default();
    process.describe();
    process.collect();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            process.collect();
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is dropped:
    // tracing-subscriber would otherwise report it with `eprintln!`, which panics when stderr
    // fails too, and an edge would stop redirecting for want of log space.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        // Each line carries the fields of its spans: `request_id` and `route` for the edge's
        // requests, `pipeline` for the processors' work.
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).flatten_event(true).init(),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_parses_its_configuration_without_clashing_names() {
        super::Cli::command().debug_assert();
    }

    /// Every `RUNNEL_*` variable a subcommand reads, from the CLI definition itself.
    fn variables() -> Vec<String> {
        let command = super::Cli::command();
        let mut vars: Vec<String> = command
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments().cloned().collect::<Vec<_>>())
            .chain(command.get_arguments().cloned())
            .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
            .collect();
        vars.sort();
        vars.dedup();
        vars
    }

    #[test]
    fn every_setting_is_documented_and_listed_in_example_env() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/example.env")).unwrap();
        let vars = variables();
        assert!(vars.len() > 20, "found only {vars:?}");
        for var in vars {
            assert!(docs.contains(&format!("`{var}`")), "docs/configuration.md does not document {var}");
            assert!(example.contains(&format!("{var}=")), "example.env does not list {var}");
        }
    }
}
