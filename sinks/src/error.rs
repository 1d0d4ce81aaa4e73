//! The sinks' error type and the one place that decides retry-or-give-up.

/// What a sink operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A setting is unusable; names the variable.
    #[error("invalid {variable}: {reason}")]
    Invalid { variable: &'static str, reason: String },
    /// ClickHouse did not answer or refused a statement.
    #[error("ClickHouse at {url}: {source}")]
    Clickhouse { url: String, source: ::clickhouse::error::Error },
    /// Redis did not answer or refused a command.
    #[error("Redis at {url}: {source}")]
    Redis { url: String, source: ::redis::RedisError },
    /// A migration cannot be applied as it stands.
    #[error("migration {file}: {reason}")]
    Migration { file: String, reason: String },
    /// The Parquet archive could not be written or read.
    #[error("archive at {path}: {reason}")]
    Archive { path: String, reason: String },
    /// A stored value does not decode.
    #[error("corrupt value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl SinkError {
    /// Whether trying the same operation again later may succeed: network trouble, time-outs
    /// and server-side failures are retryable; bad settings, bad data and corrupt values are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Clickhouse { source, .. } => {
                use ::clickhouse::error::Error as E;
                match source {
                    E::Network(_) | E::TimedOut => true,
                    // The server's own text: data errors carry codes such as 27 (cannot parse
                    // input) or 53 (type mismatch); anything else server-side is taken as transient.
                    E::BadResponse(text) => !is_clickhouse_data_error(text),
                    _ => false,
                }
            }
            // The client library already knows which of its errors are transient.
            SinkError::Redis { source, .. } => !matches!(source.retry_method(), ::redis::RetryMethod::NoRetry),
            // A full or unwritable disk may be fixed while the pipeline waits.
            SinkError::Archive { .. } => true,
            SinkError::Invalid { .. } | SinkError::Migration { .. } | SinkError::Corrupt { .. } => false,
        }
    }
}

/// ClickHouse error codes that mean the data itself is bad, so a retry cannot help.
fn is_clickhouse_data_error(text: &str) -> bool {
    const DATA_CODES: &[&str] = &[
        "Code: 6.",
        "Code: 27.",
        "Code: 38.",
        "Code: 41.",
        "Code: 53.",
        "Code: 62.",
        "Code: 69.",
        "Code: 70.",
        "Code: 72.",
        "Code: 117.",
    ];
    DATA_CODES.iter().any(|code| text.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(source: ::clickhouse::error::Error) -> SinkError {
        SinkError::Clickhouse { url: "http://x".into(), source }
    }

    #[test]
    fn network_failures_and_server_trouble_are_retried_but_bad_data_is_not() {
        assert!(ch(::clickhouse::error::Error::TimedOut).is_retryable());
        assert!(ch(::clickhouse::error::Error::BadResponse("Code: 252. Too many parts".into())).is_retryable());
        assert!(!ch(::clickhouse::error::Error::BadResponse("Code: 27. Cannot parse input".into())).is_retryable());
        assert!(!SinkError::Migration { file: "0001.sql".into(), reason: "edited".into() }.is_retryable());
    }
}
