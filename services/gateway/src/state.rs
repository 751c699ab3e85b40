//! What every handler shares: the service clients and the token verifier.

use access_token::TokenVerifier;
use chat_proto::auth::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;
use url::Url;

#[derive(Clone)]
pub struct AppState {
    pub auth: AuthServiceClient<Channel>,
    auth_channel: Channel,
    pub verifier: TokenVerifier,
}

impl AppState {
    pub fn new(auth_url: &Url, verifier: TokenVerifier) -> anyhow::Result<Self> {
        let auth_channel = grpc_channel::lazy(auth_url)?;
        Ok(Self { auth: AuthServiceClient::new(auth_channel.clone()), auth_channel, verifier })
    }

    /// Each dependency and whether it answers its gRPC health check as serving.
    pub async fn dependency_checks(&self) -> Vec<(&'static str, bool)> {
        vec![("auth", grpc_channel::is_serving(self.auth_channel.clone()).await)]
    }
}
