//! `spawn_app`: an auth service on port 0 over a fresh database, and a client for it.

use std::time::Duration;

use auth::{Application, Settings};
use chat_proto::auth::{self as pb, auth_service_client::AuthServiceClient};
use grpc_channel::{GrpcChannel, InternalCredential, Security};
use secrecy::SecretString;
use sql_pool::{Backend, testing::TestDatabase};
use tokio::sync::oneshot;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
/// The internal credential of the service under test.
pub const INTERNAL_TOKEN: &str = "auth-test-internal-credential-0123456789";

/// The trust settings of the service under test and its test client.
pub fn security() -> Security {
    Security { credential: InternalCredential::parse(INTERNAL_TOKEN).expect("a valid credential"), tls: None }
}

/// A call that acts for `user_id`, with a token signed by [`SECRET`].
pub fn as_user<T>(user_id: i64, message: T) -> tonic::Request<T> {
    let settings = access_token::TokenSettings {
        secret: SecretString::from(SECRET),
        algorithm: access_token::Algorithm::HS256,
        ttl: Duration::from_secs(600),
    };
    let token = access_token::TokenIssuer::new(&settings).issue(user_id, "someone", 0).expect("a token");
    internal_auth::UserToken::new(&token).expect("a token").request(message)
}

pub struct TestApp {
    pub client: AuthServiceClient<GrpcChannel>,
    _db: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    telemetry::init_for_tests();
    let db = TestDatabase::new(backend, "auth");
    let mut settings =
        Settings::from_env_with(db.url.clone(), SecretString::from(SECRET), security()).expect("test settings");
    settings.grpc_addr = "127.0.0.1:0".parse().expect("an address");
    let app = Application::build(settings)
        .await
        .unwrap_or_else(|error| panic!("cannot start the auth service on {backend:?} ({}): {error:#}", db.url));
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let url = url::Url::parse(&format!("http://{addr}")).expect("a URL");
    let channel = grpc_channel::lazy(&url, &security()).expect("a channel");
    TestApp { client: AuthServiceClient::new(channel), _db: db, stop: Some(stop) }
}

/// A registration with unique username and email.
pub fn registration(tag: &str) -> pb::RegisterRequest {
    let unique = format!("{tag}{:08x}", rand_suffix());
    pb::RegisterRequest {
        username: unique.clone(),
        email: format!("{unique}@example.com"),
        password: "password-123".into(),
        full_name: None,
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl TestApp {
    pub async fn register(&self, request: pb::RegisterRequest) -> Result<pb::User, tonic::Status> {
        self.client.clone().register(request).await.map(tonic::Response::into_inner)
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<pb::LoginResponse, tonic::Status> {
        let request =
            pb::LoginRequest { username: username.into(), password: password.into(), client_addr: String::new() };
        self.client.clone().login(request).await.map(tonic::Response::into_inner)
    }
}

/// The field an INVALID_ARGUMENT or ALREADY_EXISTS status names.
pub fn field_of(status: &tonic::Status) -> &str {
    status.metadata().get("x-field").and_then(|v| v.to_str().ok()).unwrap_or("")
}
