//! Builds the message-store service (databases, migrations, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use chat_proto::{
    messages::message_store_service_server::MessageStoreServiceServer,
    metadata::chat_metadata_service_client::ChatMetadataServiceClient,
};
use outbox::Delivery;
use sql_pool::Db;
use tokio::net::TcpListener;

use crate::{
    checks::MembershipChecks,
    config::{ContentBackend, Settings},
    content::{ContentStore, MongoContentStore, SqlContentStore},
    grpc::MessageStoreGrpc,
    membership::MembershipCache,
    store::{MessageStore, migrations},
    writer::{Contents, Writer},
};

/// Where message-store stages its events (see its migrations).
pub const OUTBOX_TABLE: &str = "message_outbox";

pub struct Application {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    server: grpc_channel::GrpcServer<MessageStoreServiceServer<MessageStoreGrpc>>,
    db: Db,
    contents: Arc<dyn ContentStore>,
}

impl Application {
    /// Connects the stores (and migrates the SQL one) and binds the listener;
    /// changes are announced as `delivery` says.
    pub async fn build(settings: Settings, delivery: Delivery) -> anyhow::Result<Self> {
        let db = Db::open(&settings.database_url, &settings.pool, migrations()).await.context("message store")?;
        let placement = match &settings.content {
            ContentBackend::Sql => Contents::SameTransaction(Arc::new(SqlContentStore::new(db.clone()))),
            ContentBackend::MongoDb { url, database } => {
                tracing::info!(database, "message content in MongoDB");
                Contents::Separate(Arc::new(MongoContentStore::connect(url, database).await.context("MONGODB_URL")?))
            }
        };
        let contents: Arc<dyn ContentStore> = placement.store().clone();
        let listener = grpc_channel::bind(settings.grpc_addr, "MESSAGES_GRPC_ADDR").await?;
        let local_addr = listener.local_addr()?;
        let metrics = grpc_channel::bind_metrics(settings.metrics_addr).await?;
        let metadata = ChatMetadataServiceClient::new(grpc_channel::channel(
            &settings.metadata_url,
            settings.metadata_in_process.as_ref(),
            &settings.security,
        )?);
        let memberships =
            MembershipCache::listen(settings.membership_ttl, delivery.bus.clone(), &delivery.subjects).await;
        let writer = Writer::spawn(
            db.clone(),
            placement.clone(),
            delivery.sink(&db, OUTBOX_TABLE)?,
            delivery.subjects.clone(),
            metadata.clone(),
        );
        let checks = MembershipChecks::spawn(metadata.clone());
        let service = MessageStoreGrpc::new(MessageStore::new(db.clone()), writer, placement, checks, memberships);
        let options = grpc_channel::ServeOptions::new(
            &settings.security,
            access_token::TokenVerifier::new(&settings.tokens),
            settings.shutdown_grace,
        );
        let server = grpc_channel::GrpcServer::new(MessageStoreServiceServer::new(service), options);
        Ok(Self { listener, metrics, local_addr, server, db, contents })
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
        let (db, contents) = (self.db.clone(), self.contents.clone());
        let check = move || {
            let (db, contents) = (db.clone(), contents.clone());
            async move { db.ping().await && contents.ping().await }
        };
        self.server
            .serve(self.listener, self.metrics, check, shutdown)
            .await
            .context("message-store gRPC server failed")
    }
}
