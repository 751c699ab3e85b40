//! Starts every service in this process, on the in-process bus, and stops them together.

use std::{future::Future, sync::Arc};

use event_bus::{EventPublisher, LocalBus};
use tokio::{sync::watch, task::JoinHandle};
use url::Url;

use crate::config::Settings;

/// How long in-flight work gets after a shutdown signal.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn url_of(addr: std::net::SocketAddr) -> anyhow::Result<Url> {
    Ok(Url::parse(&format!("http://{addr}"))?)
}

/// Runs every service until `shutdown` completes or one of them fails.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let bus: Arc<dyn event_bus::Bus> = Arc::new(LocalBus::new());
    let events = EventPublisher::new(bus.clone(), settings.subjects.clone());

    let auth = auth::Application::build(settings.auth).await?;
    let auth_url = url_of(auth.local_addr())?;

    let mut metadata_settings = settings.metadata;
    metadata_settings.auth_url = auth_url.clone();
    let metadata = chat_metadata::Application::build(metadata_settings, events.clone()).await?;
    let metadata_url = url_of(metadata.local_addr())?;

    let mut messages_settings = settings.messages;
    messages_settings.metadata_url = metadata_url.clone();
    let messages = message_store::Application::build(messages_settings, events.clone()).await?;
    let messages_url = url_of(messages.local_addr())?;

    let mut gateway_settings = settings.gateway;
    gateway_settings.services =
        gateway::config::ServiceUrls { auth: auth_url, metadata: metadata_url, messages: messages_url };
    let gateway = gateway::Application::build(gateway_settings, bus, settings.subjects).await?;
    let address = gateway.local_addr();
    tracing::info!(url = %format!("http://{address}"), docs = %format!("http://{address}/docs"), "chat server ready");

    let tasks: Vec<(&str, JoinHandle<anyhow::Result<()>>)> = vec![
        ("auth", tokio::spawn(auth.run_until_stopped(until_stopped()))),
        ("chat-metadata", tokio::spawn(metadata.run_until_stopped(until_stopped()))),
        ("message-store", tokio::spawn(messages.run_until_stopped(until_stopped()))),
        ("gateway", tokio::spawn(gateway.run_until_stopped(until_stopped()))),
    ];
    let (names, mut handles): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        (done, index, _) = futures::future::select_all(handles.iter_mut()) => {
            Err(anyhow::anyhow!("the {} service stopped: {done:?}", names[index]))
        }
    };
    let _ = stop.send(true);
    // Let requests in flight finish, within reason.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, futures::future::join_all(handles)).await;
    if drained.is_err() {
        tracing::warn!("services did not stop within {DRAIN_TIMEOUT:?}");
    }
    outcome
}
