//! W3C trace context (`traceparent`, `tracestate`) across process boundaries:
//! injected into outgoing gRPC metadata, extracted from incoming HTTP and gRPC
//! headers, so one request's spans in every service form one trace.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Makes W3C trace context the process's propagator.
pub fn install() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace the headers carry, if they carry one.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

/// Trace context as name/value pairs (for a message bus's headers).
pub type TracePairs = Vec<(String, String)>;

impl Injector for TracePairsMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct TracePairsMut<'a>(&'a mut TracePairs);

struct TracePairsRef<'a>(&'a [(String, String)]);

impl Extractor for TracePairsRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

/// The current span's trace context as pairs (empty outside a trace).
pub fn current_trace() -> TracePairs {
    let context = tracing::Span::current().context();
    let mut pairs = TracePairs::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut TracePairsMut(&mut pairs));
    });
    pairs
}

/// Makes `span` a child of the trace the pairs carry, if they carry one.
pub fn continue_trace_from(span: &tracing::Span, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&TracePairsRef(pairs)));
    let _ = span.set_parent(parent);
}

/// Writes the current span's trace context into outgoing headers.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeadersMut(headers));
    });
}
