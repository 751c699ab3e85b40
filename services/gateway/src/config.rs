//! The gateway's settings, read from the environment.

use std::net::{IpAddr, SocketAddr};

use access_token::TokenSettings;
use env_config::ConfigError;
use secrecy::SecretString;
use url::Url;

/// Where the auth service is reached when `AUTH_GRPC_URL` is not set.
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:50051";

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HOST:PORT`; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// The auth service's gRPC endpoint.
    pub auth_url: Url,
    pub tokens: TokenSettings,
    /// `DEBUG`: more detail in logs (never in responses).
    pub debug: bool,
}

impl Settings {
    /// For the distributed deployment: `SECRET_KEY` (the auth service's) is required.
    pub fn from_env() -> Result<Self, ConfigError> {
        let secret = env_config::string("SECRET_KEY")
            .ok_or_else(|| ConfigError::missing("SECRET_KEY", "set it to the same long random string in every service"))?;
        Self::from_env_with(SecretString::from(secret), None)
    }

    /// The rest from the environment, around a given secret and, optionally, auth endpoint.
    pub fn from_env_with(secret: SecretString, auth_url: Option<Url>) -> Result<Self, ConfigError> {
        let host: IpAddr = env_config::parsed_or("HOST", IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = env_config::parsed_or("PORT", 8000)?;
        let auth_url = match auth_url {
            Some(url) => url,
            None => env_config::url("AUTH_GRPC_URL", &["http", "https"])?
                .unwrap_or_else(|| Url::parse(DEFAULT_AUTH_URL).expect("valid default")),
        };
        Ok(Self {
            http_addr: SocketAddr::new(host, port),
            auth_url,
            tokens: TokenSettings::from_env(secret)?,
            debug: env_config::flag("DEBUG", false)?,
        })
    }
}
