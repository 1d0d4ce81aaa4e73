//! Event ids: 64-bit, time-ordered, in the Snowflake layout
//! (41 bits of milliseconds since [`EPOCH_MS`], 10 bits of worker, 12 bits of sequence).
//!
//! Ids from one generator strictly increase; ids from generators with distinct worker numbers
//! never collide. When more than 4,096 ids are asked for within one millisecond the generator
//! borrows the next millisecond rather than blocking, so ids may run slightly ahead of the clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// 2024-01-01T00:00:00Z, the zero of the id's time field.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// The wall-clock milliseconds (Unix epoch) at which an id was made.
pub fn event_id_millis(id: u64) -> u64 {
    (id >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS
}

/// Makes event ids for one worker; cheap to share between threads (one atomic per id).
#[derive(Debug)]
pub struct EventIdGenerator {
    worker: u64,
    /// The last id's time and sequence, packed as `millis << 12 | sequence`.
    last: AtomicU64,
}

impl EventIdGenerator {
    /// A generator for `worker` (only its low 10 bits are used).
    pub fn new(worker: u16) -> Self {
        Self { worker: u64::from(worker) & ((1 << WORKER_BITS) - 1), last: AtomicU64::new(0) }
    }

    /// The next id, at the current time.
    pub fn next_id(&self) -> u64 {
        self.next_at(crate::now_ms())
    }

    fn next_at(&self, now_ms: u64) -> u64 {
        let now = now_ms.saturating_sub(EPOCH_MS) << SEQUENCE_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // A later millisecond starts at sequence 0; otherwise take the next slot, which
            // carries into the millisecond field when the sequence is exhausted.
            let next = if now > last { now } else { last + 1 };
            match self.last.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    let millis = next >> SEQUENCE_BITS;
                    let seq = next & SEQUENCE_MASK;
                    return (millis << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker << SEQUENCE_BITS) | seq;
                }
                Err(actual) => last = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_strictly_increase_even_within_one_millisecond() {
        let generator = EventIdGenerator::new(7);
        let t = EPOCH_MS + 1_000;
        let ids: Vec<u64> = (0..10_000).map(|_| generator.next_at(t)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn id_carries_its_time_and_worker() {
        let generator = EventIdGenerator::new(5);
        let t = EPOCH_MS + 123_456_789;
        let id = generator.next_at(t);
        assert_eq!(event_id_millis(id), t);
        assert_eq!((id >> SEQUENCE_BITS) & 0x3ff, 5);
    }

    #[test]
    fn workers_never_collide() {
        let a = EventIdGenerator::new(1);
        let b = EventIdGenerator::new(2);
        let t = EPOCH_MS + 42;
        let ids_a: std::collections::HashSet<u64> = (0..5000).map(|_| a.next_at(t)).collect();
        assert!((0..5000).map(|_| b.next_at(t)).all(|id| !ids_a.contains(&id)));
    }

    #[test]
    fn clock_going_backwards_does_not_repeat_ids() {
        let generator = EventIdGenerator::new(0);
        let first = generator.next_at(EPOCH_MS + 10_000);
        let second = generator.next_at(EPOCH_MS + 5_000);
        assert!(second > first);
    }
}
