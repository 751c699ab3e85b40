//! Builds the message-store service (databases, migrations, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use chat_proto::{
    messages::message_store_service_server::MessageStoreServiceServer,
    metadata::chat_metadata_service_client::ChatMetadataServiceClient,
};
use event_bus::EventPublisher;
use sql_pool::Db;
use tokio::net::TcpListener;

use crate::{
    config::{ContentBackend, Settings},
    content::{ContentStore, MongoContentStore, SqlContentStore},
    grpc::MessageStoreGrpc,
    membership::MembershipCache,
    store::{MessageStore, migrations},
};

pub struct Application {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    service: MessageStoreGrpc,
    db: Db,
    contents: Arc<dyn ContentStore>,
    serve: grpc_channel::ServeOptions,
}

impl Application {
    /// Connects the stores (and migrates the SQL one) and binds the listener;
    /// message events are published through `events`.
    pub async fn build(settings: Settings, events: EventPublisher) -> anyhow::Result<Self> {
        let db = Db::open(&settings.database_url, &settings.pool, migrations()).await.context("message store")?;
        let contents: Arc<dyn ContentStore> = match &settings.content {
            ContentBackend::Sql => Arc::new(SqlContentStore::new(db.clone())),
            ContentBackend::MongoDb { url, database } => {
                tracing::info!(database, "message content in MongoDB");
                Arc::new(MongoContentStore::connect(url, database).await.context("MONGODB_URL")?)
            }
        };
        let listener = grpc_channel::bind(settings.grpc_addr, "MESSAGES_GRPC_ADDR").await?;
        let local_addr = listener.local_addr()?;
        let metrics = grpc_channel::bind_metrics(settings.metrics_addr).await?;
        let metadata = ChatMetadataServiceClient::new(grpc_channel::lazy(&settings.metadata_url, &settings.security)?);
        let memberships =
            MembershipCache::listen(settings.membership_ttl, events.bus().clone(), events.subjects()).await;
        let service =
            MessageStoreGrpc::new(MessageStore::new(db.clone()), contents.clone(), metadata, memberships, events);
        let serve = grpc_channel::ServeOptions::new(
            &settings.security,
            access_token::TokenVerifier::new(&settings.tokens),
            settings.shutdown_grace,
        );
        Ok(Self { listener, metrics, local_addr, service, db, contents, serve })
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
        let (db, contents) = (self.db.clone(), self.contents.clone());
        let check = move || {
            let (db, contents) = (db.clone(), contents.clone());
            async move { db.ping().await && contents.ping().await }
        };
        let server = MessageStoreServiceServer::new(self.service);
        grpc_channel::serve(self.listener, self.metrics, server, self.serve, check, shutdown)
            .await
            .context("message-store gRPC server failed")
    }
}
