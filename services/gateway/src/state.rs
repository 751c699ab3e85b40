//! What every handler shares: the service clients and the token verifier.

use std::time::Duration;

use access_token::TokenVerifier;
use chat_proto::auth::auth_service_client::AuthServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use url::Url;

/// How long a call to a service may take before the gateway answers 503.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a health probe of a service may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct AppState {
    pub auth: AuthServiceClient<Channel>,
    auth_channel: Channel,
    pub verifier: TokenVerifier,
}

/// A lazily connected channel: the gateway starts while a service is down and
/// reconnects by itself when it comes back.
pub fn lazy_channel(url: &Url) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

impl AppState {
    pub fn new(auth_url: &Url, verifier: TokenVerifier) -> anyhow::Result<Self> {
        let auth_channel = lazy_channel(auth_url)?;
        Ok(Self { auth: AuthServiceClient::new(auth_channel.clone()), auth_channel, verifier })
    }

    /// Each dependency and whether it answers its gRPC health check as serving.
    pub async fn dependency_checks(&self) -> Vec<(&'static str, bool)> {
        vec![("auth", probe(self.auth_channel.clone()).await)]
    }
}

async fn probe(channel: Channel) -> bool {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
        _ => false,
    }
}
