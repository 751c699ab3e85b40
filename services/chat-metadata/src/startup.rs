//! Builds the chat-metadata service (database, migrations, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use chat_proto::{
    auth::auth_service_client::AuthServiceClient, metadata::chat_metadata_service_server::ChatMetadataServiceServer,
};
use outbox::Delivery;
use sql_pool::Db;
use tokio::net::TcpListener;

use crate::{
    config::Settings,
    grpc::ChatMetadataGrpc,
    store::{ChatStore, migrations},
};

/// Where chat-metadata stages its events (see its migrations).
pub const OUTBOX_TABLE: &str = "metadata_outbox";

pub struct Application {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    server: grpc_channel::GrpcServer<ChatMetadataServiceServer<ChatMetadataGrpc>>,
    db: Db,
}

impl Application {
    /// Connects the database (and migrates it) and binds the listener;
    /// membership changes are announced as `delivery` says.
    pub async fn build(settings: Settings, delivery: Delivery) -> anyhow::Result<Self> {
        let db = Db::open(&settings.database_url, &settings.pool, migrations()).await.context("chat store")?;
        let listener = grpc_channel::bind(settings.grpc_addr, "METADATA_GRPC_ADDR").await?;
        let local_addr = listener.local_addr()?;
        let metrics = grpc_channel::bind_metrics(settings.metrics_addr).await?;
        let auth = AuthServiceClient::new(grpc_channel::channel(
            &settings.auth_url,
            settings.auth_in_process.as_ref(),
            &settings.security,
        )?);
        let sink = delivery.sink(&db, OUTBOX_TABLE)?;
        let service = ChatMetadataGrpc::new(ChatStore::new(db.clone(), sink, delivery.subjects.clone()), auth);
        let options = grpc_channel::ServeOptions::new(
            &settings.security,
            access_token::TokenVerifier::new(&settings.tokens),
            settings.shutdown_grace,
        );
        let server = grpc_channel::GrpcServer::new(ChatMetadataServiceServer::new(service), options);
        Ok(Self { listener, metrics, local_addr, server, db })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service for calls from this process (the standalone server), through the same layers.
    pub fn in_process(&self) -> grpc_channel::InProcess {
        self.server.in_process()
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|metrics| metrics.local_addr().ok())
    }

    /// Serves gRPC (with `grpc.health.v1`) until `shutdown` completes.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let check = self.db.health_check();
        self.server
            .serve(self.listener, self.metrics, check, shutdown)
            .await
            .context("chat-metadata gRPC server failed")
    }
}
