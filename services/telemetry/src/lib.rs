//! Tracing setup shared by every chat service binary, OpenTelemetry export
//! and W3C trace-context propagation ([`propagation`]), and the process's
//! Prometheus metrics ([`metrics`]).
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to one JSON
//! object per line for log collectors. With `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (e.g. `http://otel-collector:4317`) spans are also exported over OTLP/gRPC,
//! named after the service.

pub mod metrics;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Keeps span export running; flushes what is left when dropped.
#[must_use = "span export stops when the guard is dropped"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("OpenTelemetry: cannot flush the last spans: {error}");
        }
    }
}

/// An OTLP/gRPC span exporter to `endpoint`, batching on the Tokio runtime
/// (the exporter's gRPC client needs it; a batch thread without it exports nothing).
fn tracer_provider(service: &str, endpoint: &url::Url) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.as_str())
        .build()
        .map_err(|error| format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: {error}"))?;
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
        .build())
}

/// Installs the global subscriber for `service` (inside the Tokio runtime).
/// Later calls do nothing, so tests and the standalone binary may call it
/// once per service. Fails on a malformed `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn init(service: &str) -> Result<Telemetry, env_config::ConfigError> {
    init_with(service, env_config::url("OTEL_EXPORTER_OTLP_ENDPOINT", &["http", "https"])?)
}

/// [`init`] with the OTLP endpoint given (`None`: logs only).
pub fn init_with(service: &str, endpoint: Option<url::Url>) -> Result<Telemetry, env_config::ConfigError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let logs = if json {
        tracing_subscriber::fmt::layer().json().flatten_event(true).with_target(true).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(true).boxed()
    };
    let provider = match &endpoint {
        Some(endpoint) => Some(tracer_provider(service, endpoint).map_err(|error| {
            env_config::ConfigError::invalid("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str(), error)
        })?),
        None => None,
    };
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned())));
    let installed = tracing_subscriber::registry().with(filter).with(logs).with(spans).try_init();
    if installed.is_err() {
        // Someone installed a subscriber first (a test, or another service of
        // the standalone binary): theirs stays, and so does their export.
        return Ok(Telemetry::default());
    }
    propagation::install();
    match &endpoint {
        Some(endpoint) => tracing::info!(service, %endpoint, "telemetry initialised; exporting spans over OTLP"),
        None => tracing::info!(service, "telemetry initialised"),
    }
    Ok(Telemetry { provider })
}

/// For tests: logs to stdout only when `TEST_LOG` is set, otherwise nowhere.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        // No OTLP endpoint in tests: the guard holds nothing.
        let _ = init("test");
    }
}
