//! What every handler shares: the service clients and the token verifier.

use access_token::TokenVerifier;
use chat_proto::{
    auth::auth_service_client::AuthServiceClient, messages::message_store_service_client::MessageStoreServiceClient,
    metadata::chat_metadata_service_client::ChatMetadataServiceClient,
};
use grpc_channel::GrpcChannel;

use std::sync::Arc;

use event_bus::{Bus, Subjects};

use chat_proto::metadata::CheckMembershipRequest;

use crate::{
    client_addr::TrustedProxies,
    config::{Settings, WsSettings},
    error::ApiError,
    fanout::Hub,
    limits::Limits,
};

/// What every handler and socket shares, behind one `Arc`: cloning it (axum
/// does, per request; each WebSocket task holds one) costs a reference count,
/// not a copy of the clients.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub auth: AuthServiceClient<GrpcChannel>,
    pub metadata: ChatMetadataServiceClient<GrpcChannel>,
    pub messages: MessageStoreServiceClient<GrpcChannel>,
    channels: [(&'static str, GrpcChannel); 3],
    pub verifier: TokenVerifier,
    pub hub: Hub,
    pub ws: WsSettings,
    pub limits: Limits,
    pub trusted_proxies: TrustedProxies,
    /// Follows auth's token versions (see `token_versions`).
    versions_task: tokio::task::JoinHandle<()>,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.versions_task.abort();
    }
}

impl AppState {
    /// Clients for every service; they connect lazily, so the gateway starts
    /// while a service is down and answers 503 until it is back.
    pub async fn new(settings: &Settings, bus: Arc<dyn Bus>, subjects: Subjects) -> anyhow::Result<Self> {
        let (urls, local, security) = (&settings.services, &settings.local_services, &settings.security);
        let auth = grpc_channel::channel(&urls.auth, local.auth.as_ref(), security)?;
        let metadata = grpc_channel::channel(&urls.metadata, local.metadata.as_ref(), security)?;
        let messages = grpc_channel::channel(&urls.messages, local.messages.as_ref(), security)?;
        let verifier = TokenVerifier::new(&settings.tokens);
        let versions_task = tokio::spawn(crate::token_versions::follow(
            AuthServiceClient::new(auth.clone()),
            verifier.versions().clone(),
            settings.tokens.ttl,
        ));
        let hub = Hub::start(settings.replica.clone(), bus, subjects, MessageStoreServiceClient::new(messages.clone()))
            .await?;
        Ok(Self(Arc::new(Services {
            hub,
            auth: AuthServiceClient::new(auth.clone()),
            metadata: ChatMetadataServiceClient::new(metadata.clone()),
            messages: MessageStoreServiceClient::new(messages.clone()),
            channels: [("auth", auth), ("chat_metadata", metadata), ("message_store", messages)],
            verifier,
            versions_task,
            ws: settings.ws.clone(),
            limits: Limits::new(settings.limits),
            trusted_proxies: settings.trusted_proxies.clone(),
        })))
    }
}

impl Services {
    /// Ok when `user_id` is a participant of the chat; 404 for no chat, 403 for an outsider.
    pub async fn require_participant(&self, chat_id: i64, user_id: i64) -> Result<(), ApiError> {
        let request = CheckMembershipRequest { chat_id, user_id };
        let membership = self
            .metadata
            .clone()
            .check_membership(request)
            .await
            .map_err(|status| ApiError::from_status(status, "the chat-metadata service"))?
            .into_inner();
        if !membership.chat_exists {
            return Err(ApiError::NotFound("chat not found".into()));
        }
        if !membership.is_participant {
            return Err(ApiError::Forbidden("you are not a participant of this chat".into()));
        }
        Ok(())
    }

    /// Each dependency and whether it answers its gRPC health check as serving.
    pub async fn dependency_checks(&self) -> Vec<(&'static str, bool)> {
        let probes = self
            .channels
            .iter()
            .map(|(name, channel)| async move { (*name, grpc_channel::is_serving(channel.clone()).await) });
        futures::future::join_all(probes).await
    }
}
