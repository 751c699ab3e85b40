//! The standalone chat server: every service in one process, on an embedded
//! SQLite file, with no configuration needed.

mod config;
mod server;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    env_config::load_dotenv();
    let _telemetry = match telemetry::init("standalone") {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("chat-server: configuration error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let settings = match config::Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("chat-server: configuration error: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match server::run(settings, shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-server: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
