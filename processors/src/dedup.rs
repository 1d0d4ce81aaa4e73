//! Recently seen event ids, to store an event once when it arrives twice close together (a
//! click the edge re-sent from its spool after a crash keeps its event id). Bounded: the
//! oldest ids are forgotten first; a repeat arriving after about that many newer events is not
//! caught.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
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

type BlockMap = HashMap<u64, u64, BuildHasherDefault<IdHasher>>;

/// Ids are remembered in blocks of 64 consecutive ids, a bit each: an edge's Snowflake ids of
/// one millisecond are consecutive, and a partition's clicks arrive in runs, so most ids land
/// in a block that a neighbour just brought into the cache. One entry per id (a set of 16 MB
/// for a million ids, with the oldest id removed at each insert) cost two cache misses per
/// event, about an eighth of the processor's CPU in `perf`.
const BLOCK_BITS: u32 = 6;

/// The block `id` lies in, and its bit there.
fn block_and_bit(id: u64) -> (u64, u64) {
    (id >> BLOCK_BITS, 1 << (id & ((1 << BLOCK_BITS) - 1)))
}

/// About the last `capacity` event ids seen: the oldest blocks are forgotten first, so the
/// window holds between `capacity - 63` and `capacity` ids (more while the newest block alone
/// is over it).
pub(crate) struct RecentIds {
    /// Block number (`id >> 6`) → which of its 64 ids were seen.
    blocks: BlockMap,
    /// Block numbers in the order their first id was seen.
    order: VecDeque<u64>,
    /// Ids the blocks hold.
    held: usize,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        let blocks = capacity.min(1 << 20) / 8;
        Self {
            blocks: BlockMap::with_capacity_and_hasher(blocks, BuildHasherDefault::default()),
            order: VecDeque::with_capacity(blocks),
            held: 0,
            capacity,
        }
    }

    /// Records `id`; returns false when it was seen already (a duplicate).
    pub(crate) fn first_time(&mut self, id: u64) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let (block, bit) = block_and_bit(id);
        match self.blocks.entry(block) {
            Entry::Occupied(mut seen) => {
                if *seen.get() & bit != 0 {
                    return false;
                }
                *seen.get_mut() |= bit;
            }
            Entry::Vacant(new) => {
                new.insert(bit);
                self.order.push_back(block);
            }
        }
        self.held += 1;
        // The newest block stays, however small the window.
        while self.held > self.capacity && self.order.len() > 1 {
            let oldest = self.order.pop_front().expect("more than one block");
            if let Some(bits) = self.blocks.remove(&oldest) {
                self.held -= bits.count_ones() as usize;
            }
        }
        true
    }

    /// Forgets `id` (its event was dropped from an unstored batch and will be read again). Its
    /// block keeps its place in the queue.
    pub(crate) fn forget(&mut self, id: u64) {
        let (block, bit) = block_and_bit(id);
        if let Some(seen) = self.blocks.get_mut(&block)
            && *seen & bit != 0
        {
            *seen &= !bit;
            self.held -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids a block apart, so each has a block of its own.
    fn spread(n: u64) -> u64 {
        n << BLOCK_BITS
    }

    #[test]
    fn a_repeat_is_caught_until_enough_newer_ids_pushed_it_out() {
        let mut recent = RecentIds::new(3);
        assert!(recent.first_time(spread(1)));
        assert!(!recent.first_time(spread(1)));
        for id in [2, 3, 4] {
            assert!(recent.first_time(spread(id)));
        }
        assert!(recent.first_time(spread(1)), "1 was forgotten after three newer ids");
        assert!(!recent.first_time(spread(4)));
        recent.forget(spread(4));
        assert!(recent.first_time(spread(4)));
    }

    #[test]
    fn ids_of_one_block_are_told_apart() {
        let mut recent = RecentIds::new(1_000);
        for id in 1_000..1_200 {
            assert!(recent.first_time(id), "{id} is new");
        }
        for id in 1_000..1_200 {
            assert!(!recent.first_time(id), "{id} is a repeat");
        }
        assert!(recent.first_time(999) && recent.first_time(1_200));
        recent.forget(1_100);
        recent.forget(1_100);
        assert!(recent.first_time(1_100), "forgotten");
        assert!(!recent.first_time(1_101), "its neighbour is not");
        assert_eq!(recent.held, 202);
    }

    #[test]
    fn the_window_is_the_newest_blocks_holding_at_most_capacity_ids() {
        let mut recent = RecentIds::new(100);
        for id in 0..1_000 {
            assert!(recent.first_time(id));
            assert!(recent.held <= 100);
        }
        // The newest block (960..1000) is held; the one before it would make 104 ids.
        assert_eq!(recent.held, 40);
        assert!(!recent.first_time(999) && !recent.first_time(960));
        assert!(recent.first_time(5) && recent.first_time(700));
    }
}
