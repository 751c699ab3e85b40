//! The one shutdown signal every chat service binary waits for: Ctrl-C or
//! SIGTERM; and how long a process may take to stop once it came.

use std::time::Duration;

/// How long a process may drain after the signal when `SHUTDOWN_GRACE_SECONDS` is not set
/// (Kubernetes' `terminationGracePeriodSeconds` should be a little longer).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// `SHUTDOWN_GRACE_SECONDS` (default 10, at most an hour).
pub fn grace_from_env() -> Result<Duration, env_config::ConfigError> {
    let seconds: u64 = env_config::parsed_or("SHUTDOWN_GRACE_SECONDS", DEFAULT_GRACE.as_secs())?;
    if seconds > 3600 {
        return Err(env_config::ConfigError::invalid(
            "SHUTDOWN_GRACE_SECONDS",
            &seconds.to_string(),
            "expected 0 to 3600 seconds",
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Completes on Ctrl-C or SIGTERM. Servers take it as their `shutdown` future.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
