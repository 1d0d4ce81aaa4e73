//! A batch of click rows across partitions, with the offset range of every partition in it.
//! Each sink takes from it only what lies above that sink's fence.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sinks::Fences;
use sinks::clickhouse::ClickRow;

/// Rows waiting to be stored.
#[derive(Default)]
pub(crate) struct Batch {
    rows: Vec<ClickRow>,
    /// First and last message offset per partition (messages without rows count too).
    ranges: BTreeMap<i32, (i64, i64)>,
    started: Option<Instant>,
    /// Encoded size of the events held, for the byte limit.
    bytes: usize,
}

impl Batch {
    /// Records that the message at `offset` of `partition` is part of this batch.
    pub(crate) fn add_message(&mut self, partition: i32, offset: i64, bytes: usize) {
        self.started.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        self.ranges.entry(partition).and_modify(|r| r.1 = r.1.max(offset)).or_insert((offset, offset));
    }

    pub(crate) fn add_row(&mut self, row: ClickRow) {
        self.rows.push(row);
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Encoded bytes of the messages held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How long the oldest message has waited.
    pub(crate) fn age(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// Forgets partitions this consumer no longer owns: their next owner reads them again
    /// from the committed offset.
    /// Returns the event ids of the rows it dropped.
    pub(crate) fn drop_partitions(&mut self, partitions: &[i32]) -> Vec<u64> {
        let (dropped, kept): (Vec<ClickRow>, Vec<ClickRow>) =
            std::mem::take(&mut self.rows).into_iter().partition(|r| partitions.contains(&r.kafka_partition));
        self.rows = kept;
        self.ranges.retain(|p, _| !partitions.contains(p));
        if self.ranges.is_empty() {
            self.started = None;
            self.bytes = 0;
        }
        dropped.into_iter().map(|r| r.event_id).collect()
    }

    /// Rows above `fences` (a partition without a fence has stored nothing).
    pub(crate) fn rows_above<'a>(&'a self, fences: &'a Fences) -> impl Iterator<Item = &'a ClickRow> + 'a {
        self.rows.iter().filter(move |r| fences.get(&r.kafka_partition).is_none_or(|f| r.kafka_offset > *f))
    }

    /// Per partition with messages above `fence`: the offset range still to apply and the click
    /// count per link in it.
    pub(crate) fn increments_above(&self, partition: i32, fence: Option<i64>) -> Option<(i64, i64, Vec<(u64, u64)>)> {
        let (first, last) = *self.ranges.get(&partition)?;
        let floor = fence.unwrap_or(-1);
        if last <= floor {
            return None;
        }
        let mut counts: HashMap<u64, u64> = HashMap::new();
        for row in self.rows.iter().filter(|r| r.kafka_partition == partition && r.kafka_offset > floor) {
            *counts.entry(row.link_id).or_default() += 1;
        }
        let mut counts: Vec<(u64, u64)> = counts.into_iter().collect();
        counts.sort_unstable();
        Some((first.max(floor + 1), last, counts))
    }

    pub(crate) fn partitions(&self) -> Vec<i32> {
        self.ranges.keys().copied().collect()
    }

    /// The offset to commit per partition: one past the last message.
    pub(crate) fn commit_offsets(&self) -> Vec<(i32, i64)> {
        self.ranges.iter().map(|(p, (_, last))| (*p, last + 1)).collect()
    }

    /// Empties the batch after it was stored.
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.ranges.clear();
        self.started = None;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(partition: i32, offset: i64, link_id: u64) -> ClickRow {
        ClickRow {
            event_id: offset as u64,
            ts: 0,
            link_id,
            code: String::new(),
            method: "GET".into(),
            user_agent: String::new(),
            referrer: String::new(),
            accept_language: String::new(),
            ip: String::new(),
            country: String::new(),
            visitor_id: 0,
            is_bot: 0,
            kafka_partition: partition,
            kafka_offset: offset,
        }
    }

    fn batch(rows: &[(i32, i64, u64)]) -> Batch {
        let mut b = Batch::default();
        for &(p, o, l) in rows {
            b.add_message(p, o, 100);
            b.add_row(row(p, o, l));
        }
        b
    }

    #[test]
    fn a_sink_gets_only_the_rows_above_its_fence() {
        let b = batch(&[(0, 10, 1), (0, 11, 1), (0, 12, 2), (1, 5, 3)]);
        let fences = Fences::from([(0, 11)]);
        let offsets: Vec<(i32, i64)> = b.rows_above(&fences).map(|r| (r.kafka_partition, r.kafka_offset)).collect();
        assert_eq!(offsets, vec![(0, 12), (1, 5)]);
    }

    #[test]
    fn increments_start_after_a_fence_inside_the_batch() {
        let b = batch(&[(0, 10, 1), (0, 11, 1), (0, 12, 2), (0, 13, 1)]);
        assert_eq!(b.increments_above(0, None), Some((10, 13, vec![(1, 3), (2, 1)])));
        assert_eq!(b.increments_above(0, Some(11)), Some((12, 13, vec![(1, 1), (2, 1)])));
        assert_eq!(b.increments_above(0, Some(13)), None);
    }

    #[test]
    fn revoked_partitions_leave_the_batch_and_commits_point_past_the_last_message() {
        let mut b = batch(&[(0, 10, 1), (1, 7, 1), (1, 8, 1)]);
        b.add_message(2, 3, 100); // a message that yielded no row still moves the commit
        assert_eq!(b.commit_offsets(), vec![(0, 11), (1, 9), (2, 4)]);
        assert_eq!(b.drop_partitions(&[1]), vec![7, 8], "the dropped rows' event ids");
        assert_eq!(b.len(), 1);
        assert_eq!(b.commit_offsets(), vec![(0, 11), (2, 4)]);
    }
}
