//! Builds the chat-metadata service (database, migrations, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use chat_proto::{
    auth::auth_service_client::AuthServiceClient, metadata::chat_metadata_service_server::ChatMetadataServiceServer,
};
use event_bus::EventPublisher;
use sql_pool::Db;
use tokio::net::TcpListener;

use crate::{
    config::Settings,
    grpc::ChatMetadataGrpc,
    store::{ChatStore, migrations},
};

pub struct Application {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    service: ChatMetadataGrpc,
    db: Db,
    serve: grpc_channel::ServeOptions,
}

impl Application {
    /// Connects the database (and migrates it) and binds the listener;
    /// membership changes are announced through `events`.
    pub async fn build(settings: Settings, events: EventPublisher) -> anyhow::Result<Self> {
        let db = Db::open(&settings.database_url, &settings.pool, migrations()).await.context("chat store")?;
        let listener = grpc_channel::bind(settings.grpc_addr, "METADATA_GRPC_ADDR").await?;
        let local_addr = listener.local_addr()?;
        let metrics = grpc_channel::bind_metrics(settings.metrics_addr).await?;
        let auth = AuthServiceClient::new(grpc_channel::lazy(&settings.auth_url, &settings.security)?);
        let service = ChatMetadataGrpc::new(ChatStore::new(db.clone()), auth, events);
        let serve = grpc_channel::ServeOptions::new(
            &settings.security,
            access_token::TokenVerifier::new(&settings.tokens),
            settings.shutdown_grace,
        );
        Ok(Self { listener, metrics, local_addr, service, db, serve })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|metrics| metrics.local_addr().ok())
    }

    /// Serves gRPC (with `grpc.health.v1`) until `shutdown` completes.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let check = self.db.health_check();
        let server = ChatMetadataServiceServer::new(self.service);
        grpc_channel::serve(self.listener, self.metrics, server, self.serve, check, shutdown)
            .await
            .context("chat-metadata gRPC server failed")
    }
}
