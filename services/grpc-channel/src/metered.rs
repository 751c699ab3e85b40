//! Request counts and latencies of a gRPC server, per method and status code.

use std::{
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::Instant,
};

use telemetry::metrics::{Counter, EncodeLabelSet, Family, LatencyFamily, latency_family, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: String,
}

struct GrpcMetrics {
    requests: Family<Call, Counter>,
    latency: LatencyFamily<Method>,
}

static METRICS: LazyLock<GrpcMetrics> = LazyLock::new(|| {
    let metrics = GrpcMetrics { requests: Family::default(), latency: latency_family() };
    register(|registry| {
        registry.register(
            "grpc_server_requests",
            "gRPC calls served, by method and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "grpc_server_request_duration_seconds",
            "gRPC call latency, by method",
            metrics.latency.clone(),
        );
    });
    metrics
});

/// The status code of a finished call: a trailers-only error carries it in the
/// headers; a unary success, in trailers (`OK`).
fn code_of<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

fn record(path: &str, code: tonic::Code, started: Instant) {
    // An unknown method is one label, whatever the path: the label set stays bounded.
    let method = if code == tonic::Code::Unimplemented { "unknown" } else { path.trim_start_matches('/') };
    let metrics = &*METRICS;
    metrics.requests.get_or_create(&Call { method: method.to_owned(), code: format!("{code:?}") }).inc();
    metrics.latency.get_or_create(&Method { method: method.to_owned() }).observe(started.elapsed().as_secs_f64());
}

#[derive(Clone, Copy, Debug)]
pub struct MeteredLayer;

impl<S> tower::Layer<S> for MeteredLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LazyLock::force(&METRICS);
        Metered { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            let code = response.as_ref().map_or(tonic::Code::Internal, code_of);
            record(&path, code, started);
            response
        })
    }
}
