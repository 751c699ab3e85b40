//! How a [`crate::GrpcChannel`] reaches its service: over the network (a
//! lazily connected tonic channel), or in this process — the standalone
//! server, where a call goes straight into the service's tower stack: the
//! same layers a network call passes (the internal credential and the
//! user's token are checked, the call is metered), the same protobuf
//! messages, but no socket and no HTTP/2.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use tonic::{body::Body, server::NamedService, service::Routes, transport::Channel};
use tower::{Layer as _, Service, ServiceExt, util::BoxCloneSyncService};

/// Any error of a call's transport.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Call = http::Request<Body>;
type Answer = http::Response<Body>;

/// The way to a service.
#[derive(Clone)]
pub enum Transport {
    Network(Channel),
    InProcess(InProcess),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Network(channel) => f.debug_tuple("Network").field(channel).finish(),
            Self::InProcess(service) => service.fmt(f),
        }
    }
}

/// A service of this process, with its layers, callable like a channel.
#[derive(Clone)]
pub struct InProcess(BoxCloneSyncService<Call, Answer, BoxError>);

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess")
    }
}

impl InProcess {
    /// `service` (and `grpc.health.v1` from `health`) behind the layers a
    /// network server puts in front of it ([`crate::serve`]).
    pub fn new<S, H>(service: S, health: H, auth: internal_auth::Authenticate) -> Self
    where
        S: Service<Call, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
        H: Service<Call, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        H::Response: axum::response::IntoResponse,
        H::Future: Send + 'static,
    {
        let routes = Routes::new(health).add_service(service);
        let stack = crate::metered::MeteredLayer.layer(auth.layer(routes));
        let stack = ServiceExt::<Call>::map_err(stack, |never: Infallible| -> BoxError { match never {} });
        Self(BoxCloneSyncService::new(stack))
    }
}

impl Service<Call> for Transport {
    type Response = Answer;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Network(channel) => channel.poll_ready(cx).map_err(Into::into),
            Self::InProcess(service) => service.0.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Call) -> Self::Future {
        match self {
            Self::Network(channel) => {
                let call = channel.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
            Self::InProcess(service) => {
                let call = service.0.call(request);
                Box::pin(call)
            }
        }
    }
}
