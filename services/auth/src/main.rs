//! The auth service binary (distributed deployment).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_config::load_dotenv();
    let _telemetry = match telemetry::init("auth") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("auth: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let settings = match auth::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("auth: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async { auth::Application::build(settings).await?.run_until_stopped(shutdown::signal()).await };
    match result.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "auth service stopped");
            eprintln!("auth: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
