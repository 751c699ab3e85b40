//! Builds the gateway (router, layers, listener) and serves it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use event_bus::{Bus, Subjects};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    response::IntoResponse,
    routing::{get, post, put},
};
use tokio::net::TcpListener;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer, trace::TraceLayer};

use crate::{
    config::Settings,
    docs,
    error::ApiError,
    extract::MAX_BODY_BYTES,
    metrics,
    routes::{chats, messages, reads, system, users},
    state::AppState,
    ws,
};

/// The whole HTTP surface of the gateway; a request not answered within
/// `request_timeout` gets 408.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/api/v1/info", get(system::info))
        .route("/api/v1/users/register", post(users::register))
        .route("/api/v1/users/login", post(users::login))
        .route("/api/v1/users/me", get(users::me).put(users::update_me))
        .route("/api/v1/users/me/unread", get(reads::unread))
        .route("/api/v1/users/search", get(users::search))
        .route("/api/v1/users/{user_id}", get(users::get_user))
        .route("/api/v1/chats/", post(chats::create).get(chats::list))
        .route("/api/v1/chats/{chat_id}", get(chats::get).put(chats::update).delete(chats::leave))
        .route(
            "/api/v1/chats/{chat_id}/participants",
            get(chats::participants).post(chats::add_participants).delete(chats::remove_participant),
        )
        .route("/api/v1/chats/{chat_id}/participants/{user_id}", put(chats::set_admin))
        .route("/api/v1/chats/{chat_id}/read", get(reads::positions).put(reads::mark))
        .route("/api/v1/messages/", post(messages::send))
        .route("/api/v1/messages/chat/{chat_id}", get(messages::history))
        .route("/api/v1/messages/{message_id}", put(messages::edit).delete(messages::delete))
        .route("/api/v1/messages/{message_id}/edits", get(messages::edits))
        .route("/api/v1/messages/{message_id}/reactions/{emoji}", put(messages::react).delete(messages::unreact))
        .route("/api/v1/ws/stats", get(ws::stats))
        .route("/api/v1/ws/chat/{chat_id}/online", get(ws::online))
        .route("/api/v1/ws", get(ws::connect_user))
        .route("/api/v1/ws/{chat_id}", get(ws::connect));
    Router::new()
        .route("/", get(system::root))
        .route("/health", get(system::health))
        .route("/ready", get(system::ready))
        .merge(api)
        .merge(docs::router())
        .fallback(|| async { ApiError::NotFound("not found".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, request_timeout))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            let span = tracing::info_span!("http", method = %request.method(), route);
            // A client's `traceparent` makes this request part of its trace.
            telemetry::propagation::continue_trace(&span, request.headers());
            span
        }))
        .with_state(state)
}

/// A built gateway: listener bound, clients created (they connect lazily).
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    state: AppState,
    grace: Duration,
    delay: Duration,
    header_timeout: Duration,
    metrics: Option<TcpListener>,
}

impl Application {
    /// Binds the listener and starts the WebSocket hub on `bus` (NATS in the
    /// distributed deployment, in-process in the standalone binary).
    pub async fn build(settings: Settings, bus: Arc<dyn Bus>, subjects: Subjects) -> anyhow::Result<Self> {
        let state = AppState::new(&settings, bus, subjects).await?;
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on HOST:PORT={}", settings.http_addr))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            router: router(state.clone(), settings.request_timeout),
            state,
            grace: settings.shutdown_grace,
            delay: settings.shutdown_delay,
            header_timeout: settings.header_timeout,
            metrics: match grpc_channel::bind_metrics(settings.metrics_addr).await {
                Err(error) if settings.metrics_optional => {
                    tracing::warn!(%error, "no /metrics: its default port is taken (set METRICS_ADDR)");
                    None
                }
                bound => bound?,
            },
        })
    }

    /// Where `/metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|metrics| metrics.local_addr().ok())
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves HTTP until `shutdown` completes, then drains within the grace period:
    /// `/ready` answers 503 and new sockets are refused at once; after the
    /// shutdown delay (time for load balancers to notice) every socket is
    /// closed with 1012 (its user's presence withdrawn as it leaves), the
    /// other replicas are told this one is gone, and requests in flight finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr, "gateway listening");
        metrics::register_now();
        let metrics = self.metrics.map(|listener| tokio::spawn(grpc_channel::serve_metrics(listener)));
        let _stop_metrics = AbortOnDrop(metrics);
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = crate::http_server::serve(self.listener, self.router, self.header_timeout, async {
            let _ = http_stopped.await;
        });
        // Its own task: it keeps accepting while this one drains.
        let mut server = tokio::spawn(server);
        tokio::select! {
            result = &mut server => return result.context("gateway server task failed"),
            () = shutdown => {}
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        self.state.hub.stop_accepting();
        tracing::info!(grace = ?self.grace, delay = ?self.delay, "draining: not ready, no new sockets");
        tokio::time::sleep(self.delay.min(self.grace / 2)).await;
        // The sockets get most of what is left; requests in flight the rest.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tracing::info!("closing sockets with 1012, finishing requests in flight");
        let _ = tokio::time::timeout_at(deadline, self.state.hub.drain(left.mul_f64(0.8))).await;
        let _ = stop_http.send(());
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(result) => result.context("gateway server task failed"),
            Err(_) => {
                tracing::warn!("requests still in flight at the end of the grace period; stopping anyway");
                server.abort();
                Ok(())
            }
        }
    }
}

/// Aborts a background task when the owner goes.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
