//! Starts every service in this process and stops them together.

use std::future::Future;

use tokio::sync::watch;
use url::Url;

use crate::config::Settings;

/// Runs auth and the gateway until `shutdown` completes or one of them fails.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    let auth = auth::Application::build(settings.auth).await?;
    let auth_url = Url::parse(&format!("http://{}", auth.local_addr()))?;
    let mut gateway_settings = settings.gateway;
    gateway_settings.auth_url = auth_url;
    let gateway = gateway::Application::build(gateway_settings).await?;
    tracing::info!(
        url = %format!("http://{}", gateway.local_addr()),
        docs = %format!("http://{}/docs", gateway.local_addr()),
        "chat server ready"
    );

    let mut auth_task = tokio::spawn(auth.run_until_stopped(until_stopped()));
    let mut gateway_task = tokio::spawn(gateway.run_until_stopped(until_stopped()));
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        done = &mut auth_task => Err(anyhow::anyhow!("the auth service stopped: {:?}", done)),
        done = &mut gateway_task => Err(anyhow::anyhow!("the gateway stopped: {:?}", done)),
    };
    let _ = stop.send(true);
    let _ = tokio::join!(auth_task, gateway_task);
    outcome
}
