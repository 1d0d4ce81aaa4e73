//! A batch of rows across partitions, with the offset range of every partition in it. Each
//! sink takes from it only what lies above that sink's fence.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sinks::Fences;

/// A row that knows where it came from.
pub(crate) trait Stored {
    /// Kafka partition of the message that carried the event.
    fn partition(&self) -> i32;
    /// Kafka offset of that message.
    fn offset(&self) -> i64;
    /// The event's id, for dropping repeats.
    fn event_key(&self) -> u64;
    /// When the event happened, Unix seconds (the archive's hour).
    fn event_time(&self) -> u32;
}

/// Rows waiting to be stored.
pub(crate) struct Batch<R> {
    rows: Vec<R>,
    /// First and last message offset per partition (messages without rows count too).
    ranges: BTreeMap<i32, (i64, i64)>,
    started: Option<Instant>,
    /// Encoded size of the events held, for the byte limit.
    bytes: usize,
}

impl<R> Default for Batch<R> {
    fn default() -> Self {
        Self { rows: Vec::new(), ranges: BTreeMap::new(), started: None, bytes: 0 }
    }
}

impl<R: Stored> Batch<R> {
    /// Records that the message at `offset` of `partition` is part of this batch.
    pub(crate) fn add_message(&mut self, partition: i32, offset: i64, bytes: usize) {
        self.started.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        self.ranges.entry(partition).and_modify(|r| r.1 = r.1.max(offset)).or_insert((offset, offset));
    }

    pub(crate) fn add_row(&mut self, row: R) {
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
        let (dropped, kept): (Vec<R>, Vec<R>) =
            std::mem::take(&mut self.rows).into_iter().partition(|r| partitions.contains(&r.partition()));
        self.rows = kept;
        self.ranges.retain(|p, _| !partitions.contains(p));
        if self.ranges.is_empty() {
            self.started = None;
            self.bytes = 0;
        }
        dropped.into_iter().map(|r| r.event_key()).collect()
    }

    /// Rows above `fences` (a partition without a fence has stored nothing).
    pub(crate) fn rows_above<'a>(&'a self, fences: &'a Fences) -> impl Iterator<Item = &'a R> + 'a {
        self.rows.iter().filter(move |r| fences.get(&r.partition()).is_none_or(|f| r.offset() > *f))
    }

    /// The rows of `partition` above offset `floor`.
    pub(crate) fn rows_in(&self, partition: i32, floor: i64) -> impl Iterator<Item = &R> + '_ {
        self.rows.iter().filter(move |r| r.partition() == partition && r.offset() > floor)
    }

    /// The first and last message offset of `partition` in the batch.
    pub(crate) fn range(&self, partition: i32) -> Option<(i64, i64)> {
        self.ranges.get(&partition).copied()
    }

    /// What of `partition` a sink with `fence` has still to store: `(floor, last)`, the rows
    /// above offset `floor` up to message `last`; `None` when it holds it all.
    pub(crate) fn pending(&self, partition: i32, fence: Option<i64>) -> Option<(i64, i64)> {
        let (first, last) = self.range(partition)?;
        let floor = fence.unwrap_or(-1).max(first - 1);
        (last > floor).then_some((floor, last))
    }

    pub(crate) fn partitions(&self) -> Vec<i32> {
        self.ranges.keys().copied().collect()
    }

    /// Whether the batch holds `max_rows` rows or `max_bytes` bytes.
    pub(crate) fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        self.rows.len() >= max_rows || self.bytes >= max_bytes
    }

    /// The first message offset per partition.
    pub(crate) fn first_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.ranges.iter().map(|(p, (first, _))| (*p, *first))
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

/// Names rows by where they came from, for ClickHouse's insert deduplication: the topic, and
/// per partition the first and last offset and how many rows. The same rows give the same
/// token, so a retried INSERT is recognised; offsets are never reused within a topic.
pub(crate) fn dedup_token<R: Stored>(topic: &str, rows: &[&R]) -> String {
    use std::fmt::Write;
    let mut ranges: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
    for row in rows {
        let range = ranges.entry(row.partition()).or_insert((row.offset(), row.offset(), 0));
        range.0 = range.0.min(row.offset());
        range.1 = range.1.max(row.offset());
        range.2 += 1;
    }
    let mut token = format!("runnel:{topic}");
    for (partition, (first, last, count)) in ranges {
        let _ = write!(token, ":{partition}/{first}-{last}/{count}");
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (partition, offset, event id)
    struct Row(i32, i64, u64);

    impl Stored for Row {
        fn partition(&self) -> i32 {
            self.0
        }
        fn offset(&self) -> i64 {
            self.1
        }
        fn event_key(&self) -> u64 {
            self.2
        }
        fn event_time(&self) -> u32 {
            0
        }
    }

    fn batch(rows: &[(i32, i64, u64)]) -> Batch<Row> {
        let mut b = Batch::default();
        for &(p, o, id) in rows {
            b.add_message(p, o, 100);
            b.add_row(Row(p, o, id));
        }
        b
    }

    #[test]
    fn a_sink_gets_only_the_rows_above_its_fence() {
        let b = batch(&[(0, 10, 1), (0, 11, 1), (0, 12, 2), (1, 5, 3)]);
        let fences = Fences::from([(0, 11)]);
        let offsets: Vec<(i32, i64)> = b.rows_above(&fences).map(|r| (r.0, r.1)).collect();
        assert_eq!(offsets, vec![(0, 12), (1, 5)]);
        let in_zero: Vec<i64> = b.rows_in(0, 10).map(|r| r.1).collect();
        assert_eq!(in_zero, vec![11, 12]);
        assert_eq!((b.range(0), b.range(1), b.range(2)), (Some((10, 12)), Some((5, 5)), None));
        assert_eq!(
            (b.pending(0, None), b.pending(0, Some(11)), b.pending(0, Some(12))),
            (Some((9, 12)), Some((11, 12)), None)
        );
    }

    #[test]
    fn revoked_partitions_leave_the_batch_and_commits_point_past_the_last_message() {
        let mut b = batch(&[(0, 10, 1), (1, 7, 7), (1, 8, 8)]);
        b.add_message(2, 3, 100); // a message that yielded no row still moves the commit
        assert_eq!(b.commit_offsets(), vec![(0, 11), (1, 9), (2, 4)]);
        assert_eq!(b.drop_partitions(&[1]), vec![7, 8], "the dropped rows' event ids");
        assert_eq!(b.len(), 1);
        assert_eq!(b.commit_offsets(), vec![(0, 11), (2, 4)]);
    }

    #[test]
    fn the_same_rows_make_the_same_token_and_others_another() {
        let rows = [Row(1, 7, 0), Row(0, 12, 0), Row(0, 10, 0), Row(0, 10, 0)];
        let all: Vec<&Row> = rows.iter().collect();
        assert_eq!(dedup_token("t.clicks", &all), "runnel:t.clicks:0/10-12/3:1/7-7/1");
        let reordered: Vec<&Row> = rows.iter().rev().collect();
        assert_eq!(dedup_token("t.clicks", &reordered), dedup_token("t.clicks", &all));
        assert_ne!(dedup_token("t.clicks", &all[1..]), dedup_token("t.clicks", &all), "fewer rows");
        assert_ne!(dedup_token("u.clicks", &all), dedup_token("t.clicks", &all), "another topic");
    }
}
