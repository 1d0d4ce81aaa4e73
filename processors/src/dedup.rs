//! Recently seen event ids, to store an event once when it arrives twice close together (a
//! click the edge re-sent from its spool after a crash keeps its event id). Bounded: the
//! oldest ids are forgotten first; a repeat arriving after that many newer events is not caught.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` event ids seen.
pub(crate) struct RecentIds {
    set: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::with_capacity(capacity.min(1 << 20)),
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
