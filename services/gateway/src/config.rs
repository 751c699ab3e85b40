//! The gateway's settings, read from the environment.

use std::net::{IpAddr, SocketAddr};

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use url::Url;

/// Where the distributed gateway serves `/metrics` when `METRICS_ADDR` is not set.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9100";

/// Where each service is reached.
#[derive(Debug, Clone)]
pub struct ServiceUrls {
    /// `AUTH_GRPC_URL`, default `http://127.0.0.1:50051`.
    pub auth: Url,
    /// `METADATA_GRPC_URL`, default `http://127.0.0.1:50052`.
    pub metadata: Url,
    /// `MESSAGES_GRPC_URL`, default `http://127.0.0.1:50053`.
    pub messages: Url,
}

/// The services of this process, called without a socket (the standalone
/// server); a service not given here is reached at its URL.
#[derive(Debug, Clone, Default)]
pub struct LocalServices {
    pub auth: Option<grpc_channel::InProcess>,
    pub metadata: Option<grpc_channel::InProcess>,
    pub messages: Option<grpc_channel::InProcess>,
}

impl ServiceUrls {
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = |variable: &str, default: &str| -> Result<Url, ConfigError> {
            Ok(env_config::url(variable, &["http", "https"])?
                .unwrap_or_else(|| Url::parse(default).expect("valid default")))
        };
        Ok(Self {
            auth: url("AUTH_GRPC_URL", "http://127.0.0.1:50051")?,
            metadata: url("METADATA_GRPC_URL", "http://127.0.0.1:50052")?,
            messages: url("MESSAGES_GRPC_URL", "http://127.0.0.1:50053")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST:PORT`; port 0 picks a free port.
    pub http_addr: SocketAddr,
    pub services: ServiceUrls,
    pub local_services: LocalServices,
    pub tokens: TokenSettings,
    /// `DEBUG`: more detail in logs (never in responses).
    pub debug: bool,
    /// This replica's name in stats and presence: `GATEWAY_REPLICA`, else the
    /// host name (the pod name on Kubernetes) with a random suffix.
    pub replica: String,
    /// Rate limits (`MESSAGE_RATE_PER_SECOND`, `MESSAGE_BURST`, `REGISTRATIONS_PER_MINUTE`, `REGISTRATION_BURST`).
    pub limits: crate::limits::LimitSettings,
    /// The internal credential of calls to the services.
    pub security: grpc_channel::Security,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// How long the gateway may drain after SIGTERM (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: std::time::Duration,
    /// How long a stopping gateway keeps serving (not ready, no new sockets)
    /// before it closes its sockets (`SHUTDOWN_DELAY_SECONDS`, default 0).
    pub shutdown_delay: std::time::Duration,
    /// WebSocket keep-alive and origins.
    pub ws: WsSettings,
    /// Where `/metrics` is served (`METRICS_ADDR`; the distributed binary's
    /// default `0.0.0.0:9100`, `off`: nowhere). Never on the public port.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Whether a `metrics_addr` that cannot be bound is only warned about (a
    /// default the operator did not choose) instead of stopping the start.
    pub metrics_optional: bool,
    /// `HTTP_HEADER_TIMEOUT_SECONDS` (default 10): how long a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS` (default 30): how long a request may take before it is answered 408.
    pub request_timeout: std::time::Duration,
}

/// How WebSockets are kept alive, and who may open them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSettings {
    /// `WS_PING_SECONDS` (default 30): how often the server pings a socket.
    pub ping_every: std::time::Duration,
    /// `WS_PONG_TIMEOUT_SECONDS` (default 60): a socket the server has heard
    /// nothing from (no pong, no frame) for this long is closed with 4408.
    pub pong_timeout: std::time::Duration,
    /// `ALLOWED_ORIGINS` (comma-separated, e.g. `https://app.example.com`):
    /// an upgrade whose `Origin` is not listed gets 403. Unset: any origin.
    /// Requests without an `Origin` (not from a browser) are not affected.
    pub allowed_origins: Option<Vec<String>>,
}

impl WsSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let ping = seconds_at_least_1("WS_PING_SECONDS", 30)?;
        let pong = seconds_at_least_1("WS_PONG_TIMEOUT_SECONDS", 60)?;
        if pong < ping {
            return Err(ConfigError::invalid(
                "WS_PONG_TIMEOUT_SECONDS",
                &pong.as_secs().to_string(),
                "must be at least WS_PING_SECONDS",
            ));
        }
        let allowed_origins = env_config::string("ALLOWED_ORIGINS").map(|value| {
            value
                .split(',')
                .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|origin| !origin.is_empty())
                .collect()
        });
        Ok(Self { ping_every: ping, pong_timeout: pong, allowed_origins })
    }

    /// Whether a browser at `origin` may open a socket.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins.as_ref().is_none_or(|allowed| allowed.iter().any(|one| *one == origin || one == "*"))
    }
}

impl Settings {
    /// For the distributed deployment: `SECRET_KEY` (the auth service's) is required.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = access_token::secret_from_env()?;
        let mut settings = Self::from_env_with(secret, grpc_channel::Security::from_env()?)?;
        settings.metrics_addr =
            env_config::listen_addr_or_off("METRICS_ADDR", DEFAULT_METRICS_ADDR.parse().expect("valid default"))?;
        Ok(settings)
    }

    /// The rest from the environment, around a given secret and credential.
    pub fn from_env_with(secret: SecretString, security: grpc_channel::Security) -> Result<Self, ConfigError> {
        let host: IpAddr = env_config::parsed_or("HOST", IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = env_config::parsed_or("PORT", 8000)?;
        Ok(Self {
            http_addr: SocketAddr::new(host, port),
            services: ServiceUrls::from_env()?,
            local_services: LocalServices::default(),
            tokens: TokenSettings::from_env(secret)?,
            debug: env_config::flag("DEBUG", false)?,
            replica: env_config::string("GATEWAY_REPLICA").unwrap_or_else(default_replica_name),
            limits: crate::limits::LimitSettings::from_env()?,
            security,
            trusted_proxies: crate::client_addr::TrustedProxies::from_env()?,
            shutdown_grace: shutdown::grace_from_env()?,
            shutdown_delay: std::time::Duration::from_secs(env_config::parsed_or("SHUTDOWN_DELAY_SECONDS", 0)?),
            ws: WsSettings::from_env()?,
            metrics_addr: None,
            metrics_optional: false,
            header_timeout: seconds_at_least_1("HTTP_HEADER_TIMEOUT_SECONDS", 10)?,
            request_timeout: seconds_at_least_1("HTTP_REQUEST_TIMEOUT_SECONDS", 30)?,
        })
    }
}

fn seconds_at_least_1(variable: &str, default: u64) -> Result<std::time::Duration, ConfigError> {
    let seconds: u64 = env_config::parsed_or(variable, default)?;
    if seconds == 0 {
        return Err(ConfigError::invalid(variable, "0", "expected at least 1 second"));
    }
    Ok(std::time::Duration::from_secs(seconds))
}

fn default_replica_name() -> String {
    let host = env_config::string("HOSTNAME").unwrap_or_else(|| "gateway".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_exactly_but_for_case_and_a_trailing_slash() {
        let ws = WsSettings {
            ping_every: std::time::Duration::from_secs(30),
            pong_timeout: std::time::Duration::from_secs(60),
            allowed_origins: Some(vec!["https://app.example.com".into()]),
        };
        let cases = [
            ("https://app.example.com", true),
            ("HTTPS://App.Example.com/", true),
            ("http://app.example.com", false),
            ("https://app.example.com.evil.io", false),
            ("https://evil.io", false),
            ("null", false),
        ];
        for (origin, allowed) in cases {
            assert_eq!(ws.allows_origin(origin), allowed, "{origin}");
        }
        assert!(WsSettings { allowed_origins: None, ..ws.clone() }.allows_origin("https://anything.io"));
        assert!(WsSettings { allowed_origins: Some(vec!["*".into()]), ..ws }.allows_origin("https://anything.io"));
    }
}
