//! Why a pipeline stopped.

/// A pipeline's fatal error. Retryable sink failures never surface here: they are retried.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A setting is unusable; names the variable.
    #[error("invalid {variable}: {reason}")]
    Invalid { variable: &'static str, reason: String },
    /// Kafka set-up failed.
    #[error(transparent)]
    Kafka(#[from] events::kafka::KafkaSetupError),
    /// Kafka client error.
    #[error("Kafka: {0}")]
    Consumer(#[from] rdkafka::error::KafkaError),
    /// Output could not be written (`runnel dump`).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// A sink failed for good.
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
}
