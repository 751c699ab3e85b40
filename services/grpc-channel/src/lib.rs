//! Lazily connected gRPC channels between the chat services, and their health probe.
//!
//! A lazy channel lets a service start while a dependency is down and
//! reconnect by itself when it comes back; calls meanwhile fail with
//! UNAVAILABLE, which the edges turn into 503.

mod metered;
mod transport;

use std::time::Duration;

use tonic::{
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig},
};
use tonic_health::{
    pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        health_server::HealthServer,
    },
    server::HealthService,
};
use url::Url;

pub use internal_auth::InternalCredential;
pub use transport::{InProcess, Transport};

/// How long one call to another service may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a health probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the services trust each other: the internal credential every call
/// carries and every server requires (see `internal-auth`), and optionally TLS.
#[derive(Debug, Clone)]
pub struct Security {
    pub credential: InternalCredential,
    pub tls: Option<Tls>,
}

/// gRPC over TLS: this process's certificate (served by its server and shown
/// by its clients) and, for mutual TLS, the CA both sides check the other against.
#[derive(Debug, Clone)]
pub struct Tls {
    pub identity: Identity,
    /// With it, servers require client certificates it signed and clients
    /// verify servers against it; without it, clients trust the system roots.
    pub ca: Option<Certificate>,
}

impl Tls {
    /// `GRPC_TLS_CERT` and `GRPC_TLS_KEY` (PEM paths, both or neither), and `GRPC_TLS_CA`.
    pub fn from_env() -> Result<Option<Self>, env_config::ConfigError> {
        use env_config::ConfigError;
        let read = |variable: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            env_config::string(variable)
                .map(|path| std::fs::read(&path).map_err(|error| ConfigError::invalid(variable, &path, error)))
                .transpose()
        };
        let (cert, key, ca) = (read("GRPC_TLS_CERT")?, read("GRPC_TLS_KEY")?, read("GRPC_TLS_CA")?);
        match (cert, key) {
            (None, None) if ca.is_some() => {
                Err(ConfigError::missing("GRPC_TLS_CERT", "GRPC_TLS_CA is set: give the certificate and key too"))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::missing("GRPC_TLS_KEY", "GRPC_TLS_CERT is set")),
            (None, Some(_)) => Err(ConfigError::missing("GRPC_TLS_CERT", "GRPC_TLS_KEY is set")),
            (Some(cert), Some(key)) => {
                Ok(Some(Self { identity: Identity::from_pem(cert, key), ca: ca.map(Certificate::from_pem) }))
            }
        }
    }

    fn client_config(&self, host: &str) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().domain_name(host).identity(self.identity.clone());
        match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_native_roots(),
        }
    }

    fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(self.identity.clone());
        match &self.ca {
            Some(ca) => config.client_ca_root(ca.clone()),
            None => config,
        }
    }
}

impl Security {
    /// `INTERNAL_TOKEN` (required) and the optional `GRPC_TLS_*` files.
    pub fn from_env() -> Result<Self, env_config::ConfigError> {
        Ok(Self { credential: InternalCredential::from_env()?, tls: Tls::from_env()? })
    }

    /// A fresh random credential and no TLS, for services that only call each
    /// other in one process over loopback (the standalone server, tests).
    pub fn generated() -> Self {
        Self { credential: InternalCredential::generate(), tls: None }
    }
}

/// Puts the internal credential and the calling span's trace context into
/// every call's metadata.
#[derive(Debug, Clone)]
pub struct Propagate {
    credential: InternalCredential,
}

impl Interceptor for Propagate {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = std::mem::take(request.metadata_mut()).into_headers();
        telemetry::propagation::inject_current(&mut headers);
        *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        self.credential.attach(request.metadata_mut());
        Ok(request)
    }
}

/// A channel to another service that carries the credential and the trace context.
pub type GrpcChannel = InterceptedService<Transport, Propagate>;

/// The channel to a service: in process when it runs in this one (`local`,
/// the standalone server), else [`lazy`] to `url`.
pub fn channel(url: &Url, local: Option<&InProcess>, security: &Security) -> anyhow::Result<GrpcChannel> {
    match local {
        Some(local) => Ok(in_process(local.clone(), security)),
        None => lazy(url, security),
    }
}

/// A channel to a service of this process: calls pass its layers as they
/// would over the network (the credential is checked), without a socket.
pub fn in_process(service: InProcess, security: &Security) -> GrpcChannel {
    InterceptedService::new(Transport::InProcess(service), Propagate { credential: security.credential.clone() })
}

/// A channel to `url` that connects on first use and after every outage;
/// over TLS when the URL is `https://`.
pub fn lazy(url: &Url, security: &Security) -> anyhow::Result<GrpcChannel> {
    let mut endpoint = Endpoint::from_shared(url.to_string())?;
    if url.scheme() == "https" {
        let host = url.host_str().unwrap_or_default();
        let config = match &security.tls {
            Some(tls) => tls.client_config(host),
            None => ClientTlsConfig::new().domain_name(host).with_native_roots(),
        };
        endpoint = endpoint.tls_config(config)?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(Transport::Network(channel), Propagate { credential: security.credential.clone() }))
}

/// Whether the service behind `channel` answers `grpc.health.v1` as serving.
pub async fn is_serving(channel: GrpcChannel) -> bool {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
        _ => false,
    }
}

/// How often a service re-checks its own dependencies for its health status.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps `grpc.health.v1` up to date: every [`HEALTH_INTERVAL`], runs `check`
/// and reports the overall service ("") and `service_name` as serving or not.
pub fn report_health<F, Fut>(
    reporter: tonic_health::server::HealthReporter,
    service_name: &'static str,
    check: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        loop {
            let status = if check().await {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(service_name, status).await;
            tokio::time::sleep(HEALTH_INTERVAL).await;
        }
    })
}

/// Binds a service's gRPC listener; the error names the variable that set the address.
pub async fn bind(addr: std::net::SocketAddr, variable: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {variable}={addr}: {error}"))
}

/// Binds a service's metrics listener (`METRICS_ADDR`), if it has one.
pub async fn bind_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(addr, "METRICS_ADDR").await?)),
        None => Ok(None),
    }
}

/// Serves `GET /metrics` (Prometheus text) on `listener`, forever.
pub async fn serve_metrics(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::{http::header, routing::get};
    let router = axum::Router::new().route(
        "/metrics",
        get(|| async { ([(header::CONTENT_TYPE, telemetry::metrics::CONTENT_TYPE)], telemetry::metrics::render()) }),
    );
    tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
    axum::serve(listener, router).await
}

/// How a gRPC server admits calls and stops.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Every call but a health check must pass it.
    pub auth: internal_auth::Authenticate,
    /// How long calls in flight may take once `shutdown` has come.
    pub grace: Duration,
    /// Serve TLS (mutual with a CA).
    pub tls: Option<Tls>,
}

impl ServeOptions {
    /// Calls must carry `security`'s credential; user tokens are checked by
    /// `verifier`; TLS as `security` says; `grace` after the shutdown signal.
    pub fn new(security: &Security, verifier: access_token::TokenVerifier, grace: Duration) -> Self {
        Self {
            auth: internal_auth::Authenticate::new(security.credential.clone(), verifier),
            grace,
            tls: security.tls.clone(),
        }
    }
}

/// One gRPC service with its `grpc.health.v1` and the layers every call
/// passes (the internal credential, metrics): served on a listener
/// ([`GrpcServer::serve`]), and callable in this process ([`GrpcServer::in_process`]).
pub struct GrpcServer<S> {
    service: S,
    options: ServeOptions,
    reporter: tonic_health::server::HealthReporter,
}

impl<S> GrpcServer<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
        + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    pub fn new(service: S, options: ServeOptions) -> Self {
        Self { service, options, reporter: tonic_health::server::HealthReporter::new() }
    }

    fn health(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.reporter.clone()))
    }

    /// The service (and its health) for calls from this process, through the same layers.
    pub fn in_process(&self) -> InProcess {
        InProcess::new(self.service.clone(), self.health(), self.options.auth.clone())
    }

    /// Serves the service (with `grpc.health.v1`, kept up to date by
    /// `check`, and request metrics) on `listener`, and the process's metrics on
    /// `metrics`, until `shutdown` completes; then reports NOT_SERVING at once,
    /// lets calls in flight finish and stops within the grace period.
    pub async fn serve<F, Fut>(
        self,
        listener: tokio::net::TcpListener,
        metrics: Option<tokio::net::TcpListener>,
        check: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let health_service = self.health();
        let Self { service, options, reporter } = self;
        let health_task = report_health(reporter.clone(), S::NAME, check);
        let stop_health = health_task.abort_handle();
        tracing::info!(addr = %listener.local_addr()?, service = S::NAME, "gRPC service listening");
        let metrics_task = metrics.map(|metrics| tokio::spawn(serve_metrics(metrics)));
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let drain = async move {
            shutdown.await;
            let _ = stopping.send(true);
            // Health first, so that probes and balancers stop sending calls here.
            health_task.abort();
            reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            reporter.set_service_status(S::NAME, tonic_health::ServingStatus::NotServing).await;
            tracing::info!(service = S::NAME, "draining: NOT_SERVING, finishing calls in flight");
        };
        let grace = options.grace;
        let out_of_time = async move {
            let _ = stopped.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &options.tls {
            builder = builder.tls_config(tls.server_config())?;
            tracing::info!(mutual = tls.ca.is_some(), "gRPC over TLS");
        }
        let server = builder
            .trace_fn(|request| {
                let span = tracing::info_span!("grpc", path = %request.uri().path());
                telemetry::propagation::continue_trace(&span, request.headers());
                span
            })
            .layer(metered::MeteredLayer)
            .layer(options.auth)
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), drain);
        let result = tokio::select! {
            result = server => result.map_err(anyhow::Error::from),
            () = out_of_time => {
                tracing::warn!(service = S::NAME, "calls still in flight at the end of the grace period; stopping anyway");
                Ok(())
            }
        };
        stop_health.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        result
    }
}
