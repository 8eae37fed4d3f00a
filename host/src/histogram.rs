//! A Prometheus histogram whose buckets are atomics, and a worker-local
//! tally of it that is merged in one step. prometheus-client's histogram
//! takes a mutex per observation; the worker observes three per entry, so
//! it fills a [`LocalHistogram`] instead and merges it with each ack flush
//! (BENCHMARKS.md, "CPU per entry (issue 17)"). A scrape during a merge
//! may see the buckets ahead of `_sum` by the observations being merged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram with fixed bucket bounds (plus `+Inf`).
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, the last `+Inf`.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits. (The count is the buckets'
    /// total, so it is not kept apart.)
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with the finite ones of `bounds` and `+Inf`.
    pub(crate) fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let bounds: Box<[f64]> = bounds
            .into_iter()
            .filter(|b| b.is_finite())
            .chain(std::iter::once(f64::INFINITY))
            .collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one observation.
    pub(crate) fn observe(&self, v: f64) {
        let inner = &*self.inner;
        inner.counts[inner.bucket(v)].fetch_add(1, Ordering::Relaxed);
        inner.add(v);
    }

    /// An empty local tally that merges into this histogram.
    pub(crate) fn local(&self) -> LocalHistogram {
        LocalHistogram {
            counts: vec![0; self.inner.bounds.len()],
            sum: 0.0,
            count: 0,
            target: self.clone(),
        }
    }
}

impl Inner {
    fn bucket(&self, v: f64) -> usize {
        // NaN belongs to no finite bucket: it lands in `+Inf`, as it does
        // in prometheus-client.
        self.bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len() - 1)
    }

    fn add(&self, sum: f64) {
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + sum).to_bits())
            });
    }
}

/// Observations held by one worker until [`LocalHistogram::flush`].
#[derive(Debug)]
pub(crate) struct LocalHistogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
    target: Histogram,
}

impl LocalHistogram {
    /// Records one observation here.
    pub(crate) fn observe(&mut self, v: f64) {
        let bucket = self.target.inner.bucket(v);
        self.counts[bucket] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Adds what was observed here to the shared histogram, and starts over.
    pub(crate) fn flush(&mut self) {
        if self.count == 0 {
            return;
        }
        let inner = &*self.target.inner;
        for (shared, local) in inner.counts.iter().zip(&mut self.counts) {
            if *local > 0 {
                shared.fetch_add(std::mem::take(local), Ordering::Relaxed);
            }
        }
        inner.add(std::mem::take(&mut self.sum));
        self.count = 0;
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(inner.counts.iter())
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so a scrape during a merge never
        // shows a `+Inf` bucket that disagrees with `_count`.
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = f64::from_bits(inner.sum.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn direct_and_merged_observations_encode_as_prometheus_clients_histogram_does() {
        let bounds = [0.1, 1.0, f64::INFINITY];
        let reference = prometheus_client::metrics::histogram::Histogram::new(bounds);
        let direct = Histogram::new(bounds);
        let merged = Histogram::new(bounds);
        let mut local = merged.local();
        let empty = text(merged.clone());
        for v in [0.05, 0.1, 0.5, 2.0, 0.25] {
            reference.observe(v);
            direct.observe(v);
            local.observe(v);
        }
        assert_eq!(
            text(merged.clone()),
            empty,
            "nothing shared before the flush"
        );
        local.flush();
        local.flush();
        let expected = text(reference);
        assert_eq!(text(direct), expected);
        assert_eq!(text(merged), expected);
        assert!(expected.contains("h_bucket{le=\"0.1\"} 2"), "{expected}");
        assert!(expected.contains("h_bucket{le=\"+Inf\"} 5"), "{expected}");
        assert!(expected.contains("h_count 5"), "{expected}");
    }

    #[test]
    fn nan_lands_in_the_last_bucket() {
        let h = Histogram::new([1.0]);
        h.observe(f64::NAN);
        assert!(text(h).contains("h_bucket{le=\"+Inf\"} 1"));
    }

    fn text(
        h: impl prometheus_client::encoding::EncodeMetric + Send + Sync + std::fmt::Debug + 'static,
    ) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("h", "a histogram", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }
}
