//! The message-store service binary (distributed deployment).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_config::load_dotenv();
    let _telemetry = match telemetry::init("message-store") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("message-store: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let settings = match message_store::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("message-store: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async {
        let (bus, subjects) = event_bus::nats_from_env("message-store").await?;
        let delivery = outbox::Delivery::jetstream(bus, subjects, outbox::StreamSettings::from_env()?);
        message_store::Application::build(settings, delivery).await?.run_until_stopped(shutdown::signal()).await
    };
    match result.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("message-store: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
