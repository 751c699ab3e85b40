//! The chat-metadata service binary (distributed deployment).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_config::load_dotenv();
    let _telemetry = match telemetry::init("chat-metadata") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("chat-metadata: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let settings = match chat_metadata::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("chat-metadata: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async {
        let (bus, subjects) = event_bus::nats_from_env("chat-metadata").await?;
        let delivery = outbox::Delivery::jetstream(bus, subjects, outbox::StreamSettings::from_env()?);
        chat_metadata::Application::build(settings, delivery).await?.run_until_stopped(shutdown::signal()).await
    };
    match result.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-metadata: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
