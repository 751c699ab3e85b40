//! Helpers for cross-service tests: a real deployment on port 0 (auth over a
//! fresh MariaDB database, the gateway in front of it) and an HTTP client.

use std::net::SocketAddr;

use secrecy::SecretString;
use sql_pool::{Backend, testing::TestDatabase};
use tokio::sync::watch;
use url::Url;

pub const SECRET: &str = "cross-service-test-secret-0123456789";

/// A running deployment; everything stops when it is dropped.
pub struct TestDeployment {
    pub base_url: String,
    pub http: reqwest::Client,
    pub auth_addr: SocketAddr,
    stop: watch::Sender<bool>,
    _db: TestDatabase,
}

impl Drop for TestDeployment {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn until(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopped = stop.subscribe();
    async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

/// Auth on a fresh MariaDB database and a gateway in front of it, both on port 0.
pub async fn spawn_deployment() -> TestDeployment {
    telemetry::init_for_tests();
    let db = TestDatabase::new(Backend::MySql, "gateway");
    let (stop, _) = watch::channel(false);
    let mut auth_settings =
        auth::Settings::from_env_with(db.url.clone(), SecretString::from(SECRET)).expect("auth settings");
    auth_settings.grpc_addr = "127.0.0.1:0".parse().expect("an address");
    let auth = auth::Application::build(auth_settings)
        .await
        .unwrap_or_else(|error| panic!("cannot start auth on MariaDB ({}): {error:#}", db.url));
    let auth_addr = auth.local_addr();
    tokio::spawn(auth.run_until_stopped(until(&stop)));
    let gateway = spawn_gateway(auth_addr, &stop).await;
    TestDeployment {
        base_url: format!("http://{gateway}"),
        http: reqwest::Client::new(),
        auth_addr,
        stop,
        _db: db,
    }
}

/// A gateway on port 0 that reaches auth at `auth_addr`; it stops with `stop`.
pub async fn spawn_gateway(auth_addr: SocketAddr, stop: &watch::Sender<bool>) -> SocketAddr {
    let auth_url = Url::parse(&format!("http://{auth_addr}")).expect("a URL");
    let mut settings = gateway::Settings::from_env_with(SecretString::from(SECRET), Some(auth_url)).expect("settings");
    settings.http_addr = "127.0.0.1:0".parse().expect("an address");
    let gateway = gateway::Application::build(settings).await.expect("gateway starts");
    let addr = gateway.local_addr();
    tokio::spawn(gateway.run_until_stopped(until(stop)));
    addr
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl TestDeployment {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A gateway of this deployment stopped later than the rest: a second replica.
    pub async fn another_gateway(&self) -> String {
        format!("http://{}", spawn_gateway(self.auth_addr, &self.stop).await)
    }

    /// Registers and logs in a user whose name starts with `prefix`.
    pub async fn user(&self, prefix: &str) -> TestUser {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let username = format!("{prefix}_{n}_{}", std::process::id());
        let email = format!("{username}@example.com");
        let password = "password-123".to_owned();
        let body = serde_json::json!({"username": username, "email": email, "password": password});
        let response = self.http.post(self.url("/api/v1/users/register")).json(&body).send().await.expect("register");
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
        let user: serde_json::Value = response.json().await.expect("JSON");
        let login = serde_json::json!({"username": username, "password": password});
        let response = self.http.post(self.url("/api/v1/users/login")).json(&login).send().await.expect("login");
        assert_eq!(response.status(), 200);
        let token: serde_json::Value = response.json().await.expect("JSON");
        TestUser {
            id: user["id"].as_i64().expect("an id"),
            username,
            email,
            password,
            token: token["access_token"].as_str().expect("a token").to_owned(),
        }
    }
}
