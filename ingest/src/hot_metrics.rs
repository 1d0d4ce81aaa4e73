//! Metrics of the redirect path, counted per thread.
//!
//! Every redirect updates a handful of metrics: its route's request counter and latency
//! histogram, the redirect result, the cache tier, the clicks produced. Updated straight into the
//! exporter, each is an atomic operation on a cache line that the edge's worker threads take
//! from one another on every request. With two busy workers that took about 0.57 µs of CPU per
//! redirect, against 0.17 µs counted here (`perf`; bench/README.md, "bench/redirect").
//!
//! Here each thread adds to a slot of its own, alone on its cache line, and [`flush`] moves
//! what the slots hold into the exporter. `/metrics` calls [`flush`] before it renders, so what
//! it shows is exact. A latency sample is also passed on once its thread has
//! [`HISTOGRAM_BATCH`] of them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Slots per metric. Threads beyond this many share slots (still exact, and still far fewer
/// threads per cache line than all of them).
const SLOTS: usize = 16;
/// A thread passes its latency samples on to the exporter in batches of this many.
const HISTOGRAM_BATCH: usize = 64;

/// One slot, alone on its cache lines (128 bytes: adjacent-line prefetching pairs lines).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

fn slot() -> usize {
    SLOT.with(|slot| *slot)
}

/// Something [`flush`] moves into the exporter.
trait Flush: Send + Sync {
    fn flush(&self);
}

/// Every hot metric created, for [`flush`].
fn registry() -> &'static Mutex<Vec<Weak<dyn Flush>>> {
    static REGISTRY: OnceLock<Mutex<Vec<Weak<dyn Flush>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn register(metric: Arc<dyn Flush>) {
    let mut all = registry().lock().expect("not poisoned");
    all.retain(|m| m.strong_count() > 0);
    all.push(Arc::downgrade(&metric));
}

/// Moves what every hot metric holds into the exporter (before `/metrics` renders).
pub(crate) fn flush() {
    let all: Vec<_> = registry().lock().expect("not poisoned").iter().filter_map(Weak::upgrade).collect();
    for metric in all {
        metric.flush();
    }
}

/// A counter added to per thread; [`flush`] adds the sums to `target`.
#[derive(Clone)]
pub(crate) struct HotCounter(Arc<CounterSlots>);

struct CounterSlots {
    slots: [Padded<AtomicU64>; SLOTS],
    target: metrics::Counter,
}

impl HotCounter {
    pub(crate) fn new(target: metrics::Counter) -> Self {
        let inner = Arc::new(CounterSlots { slots: Default::default(), target });
        register(inner.clone());
        Self(inner)
    }

    pub(crate) fn increment(&self, n: u64) {
        self.0.slots[slot()].0.fetch_add(n, Ordering::Relaxed);
    }
}

impl Flush for CounterSlots {
    fn flush(&self) {
        let sum: u64 = self.slots.iter().map(|slot| slot.0.swap(0, Ordering::Relaxed)).sum();
        if sum > 0 {
            self.target.increment(sum);
        }
    }
}

/// A histogram whose samples wait per thread, [`HISTOGRAM_BATCH`] at a time, until recorded
/// into `target` (or until [`flush`]).
#[derive(Clone)]
pub(crate) struct HotHistogram(Arc<HistogramSlots>);

struct HistogramSlots {
    slots: [Padded<Mutex<Vec<f64>>>; SLOTS],
    target: metrics::Histogram,
}

impl HotHistogram {
    pub(crate) fn new(target: metrics::Histogram) -> Self {
        let inner = Arc::new(HistogramSlots { slots: Default::default(), target });
        register(inner.clone());
        Self(inner)
    }

    pub(crate) fn record(&self, value: f64) {
        let mut samples = self.0.slots[slot()].0.lock().expect("not poisoned");
        samples.push(value);
        if samples.len() >= HISTOGRAM_BATCH {
            self.0.pass_on(&mut samples);
        }
    }
}

impl HistogramSlots {
    fn pass_on(&self, samples: &mut Vec<f64>) {
        for value in samples.drain(..) {
            self.target.record(value);
        }
    }
}

impl Flush for HistogramSlots {
    fn flush(&self) {
        for slot in &self.slots {
            self.pass_on(&mut slot.0.lock().expect("not poisoned"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram that keeps what it is given.
    #[derive(Default)]
    struct Samples(Mutex<Vec<f64>>);

    impl metrics::HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    // The tests flush their own metric; a test that calls [`flush`] would flush the other's.

    #[test]
    fn counts_from_many_threads_reach_the_exporter_at_a_flush_exactly() {
        let target = Arc::new(AtomicU64::new(0));
        let counter = HotCounter::new(metrics::Counter::from_arc(target.clone()));
        let threads: Vec<_> = (0..SLOTS + 3)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1_000).for_each(|_| counter.increment(1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(target.load(Ordering::Relaxed), 0, "nothing passed on before a flush");
        counter.0.flush();
        assert_eq!(target.load(Ordering::Relaxed), (SLOTS as u64 + 3) * 1_000);
        counter.increment(5);
        counter.0.flush();
        counter.0.flush();
        assert_eq!(target.load(Ordering::Relaxed), (SLOTS as u64 + 3) * 1_000 + 5, "each count once");
        assert!(
            registry().lock().unwrap().iter().any(|m| std::ptr::addr_eq(m.as_ptr(), Arc::as_ptr(&counter.0))),
            "flush() reaches it"
        );
    }

    #[test]
    fn samples_are_passed_on_in_batches_and_all_of_them_at_a_flush() {
        let target = Arc::new(Samples::default());
        let histogram = HotHistogram::new(metrics::Histogram::from_arc(target.clone()));
        let recorded = || target.0.lock().unwrap().len();
        for i in 0..HISTOGRAM_BATCH - 1 {
            histogram.record(i as f64);
        }
        assert_eq!(recorded(), 0);
        histogram.record(0.5);
        assert_eq!(recorded(), HISTOGRAM_BATCH, "a full batch is passed on");
        let other = histogram.clone();
        std::thread::spawn(move || (0..10).for_each(|_| other.record(2.0))).join().unwrap();
        histogram.record(1.0);
        assert_eq!(recorded(), HISTOGRAM_BATCH);
        histogram.0.flush();
        assert_eq!(recorded(), HISTOGRAM_BATCH + 11, "a flush passes on every thread's samples");
        let sum: f64 = target.0.lock().unwrap().iter().sum();
        let expected = (0..HISTOGRAM_BATCH - 1).sum::<usize>() as f64 + 0.5 + 20.0 + 1.0;
        assert_eq!(sum, expected);
    }
}
