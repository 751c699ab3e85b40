//! The gateway's settings, read from the environment.

use std::net::{IpAddr, SocketAddr};

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use url::Url;

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
}

impl Settings {
    /// For the distributed deployment: `SECRET_KEY` (the auth service's) is required.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = access_token::secret_from_env()?;
        Self::from_env_with(secret, grpc_channel::Security::from_env()?)
    }

    /// The rest from the environment, around a given secret and credential.
    pub fn from_env_with(secret: SecretString, security: grpc_channel::Security) -> Result<Self, ConfigError> {
        let host: IpAddr = env_config::parsed_or("HOST", IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = env_config::parsed_or("PORT", 8000)?;
        Ok(Self {
            http_addr: SocketAddr::new(host, port),
            services: ServiceUrls::from_env()?,
            tokens: TokenSettings::from_env(secret)?,
            debug: env_config::flag("DEBUG", false)?,
            replica: env_config::string("GATEWAY_REPLICA").unwrap_or_else(default_replica_name),
            limits: crate::limits::LimitSettings::from_env()?,
            security,
            trusted_proxies: crate::client_addr::TrustedProxies::from_env()?,
            shutdown_grace: shutdown::grace_from_env()?,
            shutdown_delay: std::time::Duration::from_secs(env_config::parsed_or("SHUTDOWN_DELAY_SECONDS", 0)?),
        })
    }
}

fn default_replica_name() -> String {
    let host = env_config::string("HOSTNAME").unwrap_or_else(|| "gateway".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}
