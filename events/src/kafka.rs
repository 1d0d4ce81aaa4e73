//! Kafka connection settings and the topics of the design, with their partition counts and
//! configs; `ensure_topics` creates what is missing and checks what exists.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How to reach Kafka and how topics are named.
#[derive(clap::Args, Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated `host:port`.
    #[arg(
        id = "kafka_brokers",
        long = "kafka-brokers",
        env = "RUNNEL_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Prefix of every topic name: `{prefix}clicks`, `{prefix}orders`, `{prefix}links`, `{prefix}dlq`.
    #[arg(id = "kafka_topic_prefix", long = "topic-prefix", env = "RUNNEL_TOPIC_PREFIX", default_value = "runnel.")]
    pub topic_prefix: String,
    /// Replication factor for topics that `runnel topics` creates.
    #[arg(id = "kafka_replication", long = "kafka-replication", env = "RUNNEL_KAFKA_REPLICATION", default_value_t = 1)]
    pub replication: i32,
    /// Timeout for metadata and admin requests, in milliseconds.
    #[arg(
        id = "kafka_timeout_ms",
        long = "kafka-timeout-ms",
        env = "RUNNEL_KAFKA_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub timeout_ms: u64,
    /// librdkafka debug contexts to log (e.g. `cgrp,topic,fetch`); empty for none.
    #[arg(id = "kafka_debug", long = "kafka-debug", env = "RUNNEL_KAFKA_DEBUG", default_value = "")]
    pub debug: String,
}

/// Errors of Kafka set-up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A setting is unusable; names the variable.
    #[error("invalid {variable}: {reason}")]
    Invalid { variable: &'static str, reason: String },
    /// The brokers did not answer.
    #[error("cannot reach Kafka at {brokers}: {source} (is it running? `scripts/stack up` starts the local one)")]
    Unreachable { brokers: String, source: KafkaError },
    /// A topic exists with other settings than the design's.
    #[error("topic {topic} has {actual} partitions, expected {expected}")]
    PartitionMismatch { topic: String, expected: usize, actual: usize },
    /// Kafka refused to create a topic.
    #[error("creating topic {topic}: {source}")]
    Create { topic: String, source: KafkaError },
}

impl KafkaConfig {
    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), KafkaSetupError> {
        let bad = |reason: String| KafkaSetupError::Invalid { variable: "RUNNEL_KAFKA_BROKERS", reason };
        if self.brokers.trim().is_empty() {
            return Err(bad("empty".into()));
        }
        for broker in self.brokers.split(',') {
            let (host, port) = broker.trim().rsplit_once(':').ok_or_else(|| bad(format!("'{broker}' has no :port")))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad(format!("'{broker}' is not host:port")));
            }
        }
        if self.replication < 1 {
            return Err(KafkaSetupError::Invalid {
                variable: "RUNNEL_KAFKA_REPLICATION",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// A client config with the brokers set; callers add their own settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Come back within a second of a broker's return (librdkafka's default backoff grows to 10 s).
        config.set("reconnect.backoff.max.ms", "1000");
        // librdkafka logs through the `log` facade only when asked; keep its noise at warn.
        if self.debug.is_empty() {
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        } else {
            config.set("debug", &self.debug).set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        config
    }

    /// The topic names for this prefix.
    pub fn topics(&self) -> Topics {
        Topics {
            clicks: format!("{}clicks", self.topic_prefix),
            orders: format!("{}orders", self.topic_prefix),
            links: format!("{}links", self.topic_prefix),
            dlq: format!("{}dlq", self.topic_prefix),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Asks the brokers for metadata: fails with a message naming Kafka when they do not answer.
    pub async fn check_reachable(&self) -> Result<(), KafkaSetupError> {
        let config = self.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer =
                config.client_config().create().map_err(|source| config.unreachable(source))?;
            consumer.fetch_metadata(None, config.timeout()).map(|_| ()).map_err(|source| config.unreachable(source))
        })
        .await
        .expect("metadata task does not panic")
    }

    fn unreachable(&self, source: KafkaError) -> KafkaSetupError {
        KafkaSetupError::Unreachable { brokers: self.brokers.clone(), source }
    }
}

/// The names of Runnel's topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Click events, key: link id.
    pub clicks: String,
    /// Order events, key: order id.
    pub orders: String,
    /// Link state, compacted, key: short code.
    pub links: String,
    /// Messages no pipeline could take, with reason headers.
    pub dlq: String,
}

/// A topic as the design wants it.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// Full topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Topic configs (`cleanup.policy`, `retention.ms`).
    pub configs: Vec<(&'static str, String)>,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Topics {
    /// The four topics with their partition counts and configs (ARCHITECTURE.md, "Topics").
    pub fn specs(&self) -> Vec<TopicSpec> {
        let retention =
            |days: u64| vec![("cleanup.policy", "delete".to_string()), ("retention.ms", (days * DAY_MS).to_string())];
        vec![
            TopicSpec { name: self.clicks.clone(), partitions: 12, configs: retention(7) },
            TopicSpec { name: self.orders.clone(), partitions: 12, configs: retention(7) },
            TopicSpec {
                name: self.links.clone(),
                partitions: 6,
                configs: vec![("cleanup.policy", "compact".to_string())],
            },
            TopicSpec { name: self.dlq.clone(), partitions: 3, configs: retention(14) },
        ]
    }
}

/// What `ensure_topics` did with one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    /// Created now.
    Created,
    /// Already there with the expected partition count.
    Exists,
}

/// Creates the topics that are missing and checks the partition count of those that exist.
pub async fn ensure_topics(config: &KafkaConfig) -> Result<Vec<(TopicSpec, TopicOutcome)>, KafkaSetupError> {
    config.validate()?;
    config.check_reachable().await?;
    let admin: AdminClient<DefaultClientContext> =
        config.client_config().create().map_err(|source| config.unreachable(source))?;
    let specs = config.topics().specs();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            spec.configs.iter().fold(
                NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(config.replication)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(config.timeout()));
    let results = admin.create_topics(&new_topics, &options).await.map_err(|source| config.unreachable(source))?;

    let mut outcomes = Vec::with_capacity(specs.len());
    for (spec, result) in specs.into_iter().zip(results) {
        let outcome = match result {
            Ok(_) => TopicOutcome::Created,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => TopicOutcome::Exists,
            Err((_, code)) => {
                return Err(KafkaSetupError::Create { topic: spec.name.clone(), source: KafkaError::AdminOp(code) });
            }
        };
        outcomes.push((spec, outcome));
    }
    check_partitions(config, &outcomes).await?;
    Ok(outcomes)
}

async fn check_partitions(config: &KafkaConfig, topics: &[(TopicSpec, TopicOutcome)]) -> Result<(), KafkaSetupError> {
    let config = config.clone();
    let specs: Vec<TopicSpec> = topics.iter().map(|(spec, _)| spec.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.client_config().create().map_err(|source| config.unreachable(source))?;
        for spec in specs {
            // A topic created a moment ago may take a few metadata rounds to show up.
            let mut actual = 0;
            for _ in 0..20 {
                let metadata = consumer
                    .fetch_metadata(Some(&spec.name), config.timeout())
                    .map_err(|source| config.unreachable(source))?;
                actual = metadata.topics().first().map_or(0, |t| t.partitions().len());
                if actual > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            if actual != spec.partitions as usize {
                return Err(KafkaSetupError::PartitionMismatch {
                    topic: spec.name,
                    expected: spec.partitions as usize,
                    actual,
                });
            }
        }
        Ok(())
    })
    .await
    .expect("metadata task does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(brokers: &str) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: "runnel.".into(),
            replication: 1,
            timeout_ms: 1000,
            debug: String::new(),
        }
    }

    #[test]
    fn broker_lists_are_validated_naming_the_variable() {
        assert!(config("127.0.0.1:9092,kafka:9093").validate().is_ok());
        let error = config("localhost").validate().unwrap_err().to_string();
        assert!(error.contains("RUNNEL_KAFKA_BROKERS") && error.contains("localhost"), "{error}");
        assert!(config("host:notaport").validate().is_err());
    }

    #[test]
    fn topic_names_follow_the_prefix_and_links_are_compacted() {
        let topics = config("a:1").topics();
        assert_eq!(topics.clicks, "runnel.clicks");
        let specs = topics.specs();
        let links = specs.iter().find(|s| s.name == "runnel.links").unwrap();
        assert_eq!(links.partitions, 6);
        assert!(links.configs.contains(&("cleanup.policy", "compact".to_string())));
    }
}
