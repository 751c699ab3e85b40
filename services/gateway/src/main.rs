//! The gateway binary (distributed deployment).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_config::load_dotenv();
    let _telemetry = match telemetry::init("gateway") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("gateway: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let settings = match gateway::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gateway: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async {
        let (bus, subjects) = event_bus::nats_from_env("gateway").await?;
        let app = gateway::Application::build(settings, std::sync::Arc::new(bus), subjects).await?;
        app.run_until_stopped(shutdown::signal()).await
    };
    match result.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gateway: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
