//! Builds the auth service (database, migrations, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr};

use access_token::{TokenIssuer, TokenVerifier};
use anyhow::Context;
use chat_proto::auth::auth_service_server::AuthServiceServer;
use sql_pool::Db;
use tokio::net::TcpListener;

use crate::{
    config::Settings,
    grpc::AuthGrpc,
    login_limits::LoginLimits,
    password::PasswordHasher,
    store::{UserStore, migrations},
};

/// A built auth service: its listener is bound, its database migrated.
pub struct Application {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    local_addr: SocketAddr,
    server: grpc_channel::GrpcServer<AuthServiceServer<AuthGrpc>>,
    db: Db,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::open(&settings.database_url, &settings.pool, migrations()).await.context("user store")?;
        let listener = grpc_channel::bind(settings.grpc_addr, "AUTH_GRPC_ADDR").await?;
        let local_addr = listener.local_addr()?;
        let metrics = grpc_channel::bind_metrics(settings.metrics_addr).await?;
        let hasher = PasswordHasher::new(settings.max_concurrent_hashes)?;
        let service = AuthGrpc::new(
            UserStore::new(db.clone()),
            hasher,
            TokenIssuer::new(&settings.tokens),
            TokenVerifier::new(&settings.tokens),
            LoginLimits::new(settings.login_limits),
        );
        let options = grpc_channel::ServeOptions::new(
            &settings.security,
            TokenVerifier::new(&settings.tokens),
            settings.shutdown_grace,
        );
        let server = grpc_channel::GrpcServer::new(AuthServiceServer::new(service), options);
        Ok(Self { listener, metrics, local_addr, server, db })
    }

    /// The address actually bound (the real port when 0 was asked for).
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
        self.server.serve(self.listener, self.metrics, check, shutdown).await.context("auth gRPC server failed")
    }
}
