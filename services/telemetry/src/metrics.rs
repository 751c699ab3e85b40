//! Prometheus metrics: one registry per process, served as text at `/metrics`
//! (the gateway's HTTP port; a gRPC service's `METRICS_ADDR`).
//!
//! A crate keeps its metrics in a `static` and registers them once with
//! [`register`]; [`render`] writes everything registered so far, plus the
//! process's resident memory and open file descriptors.

use std::{
    sync::{LazyLock, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

pub use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::with_prefix("chat")));
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds metrics to the process's registry (names get the `chat_` prefix).
pub fn register(add: impl FnOnce(&mut Registry)) {
    LazyLock::force(&STARTED);
    add(&mut registry());
}

/// Buckets for request latencies: 0.5 ms to ~16 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

/// A latency histogram with [`latency_buckets`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Latency histograms by label set.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A [`LatencyFamily`] whose histograms have [`latency_buckets`].
pub fn latency_family<L: Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode_registry(&mut text, &registry()) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    process_metrics(&mut text);
    text.push_str("# EOF\n");
    text
}

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the kernel says about this process (Linux; nothing elsewhere).
fn process_metrics(text: &mut String) {
    use std::fmt::Write as _;
    let page_size = 4096_u64;
    if let Some(resident_pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()))
    {
        let _ = writeln!(
            text,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            resident_pages * page_size
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            text,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            fds.count()
        );
    }
    let _ = writeln!(
        text,
        "# HELP process_uptime_seconds Seconds since the metrics were first used.\n\
         # TYPE process_uptime_seconds gauge\nprocess_uptime_seconds {:.3}",
        STARTED.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_and_the_process_are_rendered() {
        let counter = Counter::<u64>::default();
        register(|registry| registry.register("render_test_events", "Events of the render test", counter.clone()));
        counter.inc_by(3);
        let text = render();
        assert!(text.contains("chat_render_test_events_total 3"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
