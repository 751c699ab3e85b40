//! The gateway's Prometheus metrics, served with the rest of the process's at
//! `GET /metrics` on the admin listener (`METRICS_ADDR`, never the public
//! port): HTTP requests by route and status, and the WebSocket hub.

use std::{sync::LazyLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::Method,
    middleware::Next,
    response::Response,
};
use telemetry::metrics::{Counter, EncodeLabelSet, Family, Gauge, LatencyFamily, latency_family, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answered {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: &'static str,
    route: String,
}

pub struct GatewayMetrics {
    requests: Family<Answered, Counter>,
    latency: LatencyFamily<Route>,
    /// Open WebSocket connections on this replica.
    pub ws_connections: Gauge,
    /// Frames queued to sockets by the hub's fanout.
    pub ws_frames_queued: Counter,
    /// Sockets closed with 1013 because their queue was full.
    pub ws_slow_closes: Counter,
    /// Backfills of a room from message-store (a gap, or a bus reconnection).
    pub ws_backfills: Counter,
    /// Catch-ups of a room from the events stream (after a bus reconnection).
    pub ws_catch_ups: Counter,
    /// Events a catch-up found that the room had missed.
    pub ws_caught_up_events: Counter,
}

pub static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| {
    let metrics = GatewayMetrics {
        requests: Family::default(),
        latency: latency_family(),
        ws_connections: Gauge::default(),
        ws_frames_queued: Counter::default(),
        ws_slow_closes: Counter::default(),
        ws_backfills: Counter::default(),
        ws_catch_ups: Counter::default(),
        ws_caught_up_events: Counter::default(),
    };
    register(|registry| {
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency (to the response head), by method and route",
            metrics.latency.clone(),
        );
        registry.register(
            "ws_connections",
            "Open WebSocket connections on this replica",
            metrics.ws_connections.clone(),
        );
        registry.register("ws_frames_queued", "Frames queued to WebSocket clients", metrics.ws_frames_queued.clone());
        registry.register(
            "ws_slow_closes",
            "WebSocket clients closed with 1013 for not keeping up",
            metrics.ws_slow_closes.clone(),
        );
        registry.register("ws_backfills", "Room backfills from message-store", metrics.ws_backfills.clone());
        registry.register("ws_catch_ups", "Room catch-ups from the events stream", metrics.ws_catch_ups.clone());
        registry.register(
            "ws_caught_up_events",
            "Events a catch-up delivered that the room had missed live",
            metrics.ws_caught_up_events.clone(),
        );
    });
    metrics
});

/// A bounded label for the method: the standard ones by name, the rest as one.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, so the label set stays bounded).
pub async fn track(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &*METRICS;
    let status = response.status().as_u16();
    metrics.requests.get_or_create(&Answered { method, route: route.clone(), status }).inc();
    metrics.latency.get_or_create(&Route { method, route }).observe(started.elapsed().as_secs_f64());
    response
}

/// Registers the gateway's metrics with the process's registry (before the
/// first request, so that a scrape sees them at zero).
pub fn register_now() {
    LazyLock::force(&METRICS);
}
