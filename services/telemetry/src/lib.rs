//! Tracing setup shared by every chat service binary, and the process's
//! Prometheus metrics ([`metrics`]).
//!
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches to one JSON
//! object per line for log collectors.

pub mod metrics;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber for `service`. Later calls do nothing, so
/// tests and the standalone binary may call it once per service.
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let installed = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if installed.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}

/// For tests: logs to stdout only when `TEST_LOG` is set, otherwise nowhere.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init("test");
    }
}
