//! Recently seen event ids, to store an event once when it arrives twice close together (a
//! click the edge re-sent from its spool after a crash keeps its event id). Bounded: the
//! oldest ids are forgotten first; a repeat arriving after that many newer events is not caught.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Event ids are already well spread (Snowflake ids, hashes of client keys): one multiply and
/// a fold mix them enough, far cheaper than SipHash at a million lookups a second.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// The last `capacity` event ids seen.
pub(crate) struct RecentIds {
    set: IdSet,
    order: VecDeque<u64>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            set: IdSet::with_capacity_and_hasher(capacity.min(1 << 20), BuildHasherDefault::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
        }
    }

    /// Records `id`; returns false when it was seen already (a duplicate).
    pub(crate) fn first_time(&mut self, id: u64) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }

    /// Forgets `id` (its event was dropped from an unstored batch and will be read again). Its
    /// place in the queue stays until it ages out; that only makes a later repeat be forgotten
    /// a little early.
    pub(crate) fn forget(&mut self, id: u64) {
        self.set.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_caught_until_enough_newer_ids_pushed_it_out() {
        let mut recent = RecentIds::new(3);
        assert!(recent.first_time(1));
        assert!(!recent.first_time(1));
        for id in [2, 3, 4] {
            assert!(recent.first_time(id));
        }
        assert!(recent.first_time(1), "1 was forgotten after three newer ids");
        assert!(!recent.first_time(4));
        recent.forget(4);
        assert!(recent.first_time(4));
    }
}
