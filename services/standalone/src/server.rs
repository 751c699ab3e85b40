//! Starts every service in this process, on the in-process bus, and stops them together.

use std::{future::Future, sync::Arc};

use event_bus::LocalBus;
use outbox::Delivery;
use tokio::{sync::watch, task::JoinHandle};
use url::Url;

use crate::config::Settings;

fn url_of(addr: std::net::SocketAddr) -> anyhow::Result<Url> {
    Ok(Url::parse(&format!("http://{addr}"))?)
}

/// A future that completes once `stop` says so.
fn until(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopped = stop.subscribe();
    async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

/// Runs every service until `shutdown` completes or one of them fails. On
/// shutdown the gateway drains first (sockets closed with 1012, requests in
/// flight finished, with the services still there to answer them), then the
/// services stop.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop_gateway, _) = watch::channel(false);
    let (stop_services, _) = watch::channel(false);
    let grace = settings.gateway.shutdown_grace;
    let bus: Arc<dyn event_bus::Bus> = Arc::new(LocalBus::new());
    // The in-process bus lives and dies with the services: no outbox needed.
    let delivery = Delivery::direct(bus.clone(), settings.subjects.clone());

    let auth = auth::Application::build(settings.auth).await?;
    let auth_url = url_of(auth.local_addr())?;

    // The services call each other in process (no socket); their loopback
    // listeners stay for what probes them from outside.
    let mut metadata_settings = settings.metadata;
    metadata_settings.auth_url = auth_url.clone();
    metadata_settings.auth_in_process = Some(auth.in_process());
    let metadata = chat_metadata::Application::build(metadata_settings, delivery.clone()).await?;
    let metadata_url = url_of(metadata.local_addr())?;

    let mut messages_settings = settings.messages;
    messages_settings.metadata_url = metadata_url.clone();
    messages_settings.metadata_in_process = Some(metadata.in_process());
    let messages = message_store::Application::build(messages_settings, delivery).await?;
    let messages_url = url_of(messages.local_addr())?;

    let mut gateway_settings = settings.gateway;
    gateway_settings.services =
        gateway::config::ServiceUrls { auth: auth_url, metadata: metadata_url, messages: messages_url };
    gateway_settings.local_services = gateway::config::LocalServices {
        auth: Some(auth.in_process()),
        metadata: Some(metadata.in_process()),
        messages: Some(messages.in_process()),
    };
    let gateway = gateway::Application::build(gateway_settings, bus, settings.subjects).await?;
    let address = gateway.local_addr();
    tracing::info!(url = %format!("http://{address}"), docs = %format!("http://{address}/docs"), "chat server ready");

    let tasks: Vec<(&str, JoinHandle<anyhow::Result<()>>)> = vec![
        ("gateway", tokio::spawn(gateway.run_until_stopped(until(&stop_gateway)))),
        ("auth", tokio::spawn(auth.run_until_stopped(until(&stop_services)))),
        ("chat-metadata", tokio::spawn(metadata.run_until_stopped(until(&stop_services)))),
        ("message-store", tokio::spawn(messages.run_until_stopped(until(&stop_services)))),
    ];
    let (names, mut handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        (done, index, _) = futures::future::select_all(handles.iter_mut()) => {
            Err(anyhow::anyhow!("the {} service stopped: {done:?}", names[index]))
        }
    };
    let deadline = tokio::time::Instant::now() + grace + std::time::Duration::from_secs(1);
    let _ = stop_gateway.send(true);
    let mut handles = handles.into_iter();
    if let Some(gateway) = handles.next() {
        let _ = tokio::time::timeout_at(deadline, gateway).await;
    }
    let _ = stop_services.send(true);
    if tokio::time::timeout_at(deadline, futures::future::join_all(handles)).await.is_err() {
        tracing::warn!("services did not stop within {grace:?}");
    }
    outcome
}
