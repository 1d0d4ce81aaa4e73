//! The click spool: where click events wait on disk while Kafka is unreachable or the
//! producer's queue is full, so a redirect never waits on Kafka and no click it answered is lost,
//! even across a `kill -9` of the edge.
//!
//! - [`log`]: the files — numbered segments of checksummed records, and an ack checkpoint per
//!   segment saying how many of its records Kafka has acknowledged.
//! - [`clicks`]: the click path — direct to the producer while Kafka is healthy; to the spool,
//!   written before the redirect is answered, while it is not; replayed in order when it returns.

pub(crate) mod clicks;
pub(crate) mod log;
