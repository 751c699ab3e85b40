//! Helpers for cross-service tests: the distributed deployment on port 0 —
//! auth, chat-metadata and message-store over a fresh MariaDB database, the
//! real NATS server with a subject prefix of its own, and gateways in front —
//! and an HTTP client.

pub mod ws;

use std::{net::SocketAddr, sync::Arc};

use chat_proto::{
    auth::auth_service_client::AuthServiceClient, messages::message_store_service_client::MessageStoreServiceClient,
    metadata::chat_metadata_service_client::ChatMetadataServiceClient,
};
use grpc_channel::{GrpcChannel, Security};

use event_bus::{NatsBus, Subjects};
use gateway::{config::ServiceUrls, limits::LimitSettings};
use outbox::{Delivery, StreamSettings};
use secrecy::SecretString;
use sql_pool::{Backend, testing::TestDatabase};
use tokio::sync::watch;
use url::Url;

pub const SECRET: &str = "cross-service-test-secret-0123456789";
/// The internal credential of every deployment the tests start.
pub const INTERNAL_TOKEN: &str = "cross-service-test-internal-credential-0123456789";

/// The services' trust settings in tests: [`INTERNAL_TOKEN`].
pub fn security() -> Security {
    let credential = grpc_channel::InternalCredential::parse(INTERNAL_TOKEN).expect("a valid credential");
    Security { credential, tls: None }
}

/// A call that acts for `user_id` (named `user<id>`), with a token signed by [`SECRET`].
pub fn as_user<T>(user_id: i64, message: T) -> tonic::Request<T> {
    let settings = access_token::TokenSettings {
        secret: SecretString::from(SECRET),
        algorithm: access_token::Algorithm::HS256,
        ttl: std::time::Duration::from_secs(600),
    };
    let token =
        access_token::TokenIssuer::new(&settings).issue(user_id, &format!("user{user_id}"), 0).expect("a token");
    internal_auth::UserToken::new(&token).expect("a token travels as metadata").request(message)
}

/// The NATS server tests use: `TEST_NATS_URL`, default `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A subject prefix no other test uses.
pub fn unique_prefix(name: &str) -> String {
    format!("test-{name}-{}-{:x}", std::process::id(), next_number())
}

fn next_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A running deployment; everything stops when it is dropped.
pub struct TestDeployment {
    pub base_url: String,
    /// The first gateway's `/metrics` on its admin listener.
    pub metrics_url: String,
    pub http: reqwest::Client,
    pub services: ServiceUrls,
    pub subjects: Subjects,
    pub bus: NatsBus,
    pub nats_url: String,
    pub db: TestDatabase,
    stop: watch::Sender<bool>,
}

impl Drop for TestDeployment {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        delete_stream(&self.nats_url, &self.subjects);
    }
}

/// Deletes the events stream of a test's subjects (every test prefix makes
/// one), on a runtime of its own: a test's runtime may be ending.
pub fn delete_stream(nats_url: &str, subjects: &Subjects) {
    let (url, name) = (nats_url.to_owned(), outbox::stream::name(subjects));
    let deleted = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let client =
                tokio::time::timeout(std::time::Duration::from_secs(2), async_nats::connect(url)).await.ok()?.ok()?;
            let deleted = async_nats::jetstream::new(client).delete_stream(&name).await;
            Some(deleted.is_ok())
        })
    });
    let _ = deleted.join();
}

/// A future that completes when `stop` says so.
pub fn until(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stopped = stop.subscribe();
    async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }
}

fn url_of(addr: SocketAddr) -> Url {
    Url::parse(&format!("http://{addr}")).expect("a URL")
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// Every service as its own server on port 0, over one fresh MariaDB database and real NATS.
pub async fn spawn_deployment() -> TestDeployment {
    spawn_deployment_on(Backend::MySql).await
}

/// Every service as its own server on port 0, over a fresh database of this backend and real NATS.
pub async fn spawn_deployment_on(backend: Backend) -> TestDeployment {
    spawn_deployment_with(backend, &nats_url()).await
}

/// Every service as its own server on port 0, over a fresh database of this
/// backend and the NATS server at `nats_url`.
pub async fn spawn_deployment_with(backend: Backend, nats_url: &str) -> TestDeployment {
    let db = TestDatabase::new(backend, "deploy");
    let url = db.url.clone();
    spawn_deployment_over(db, url, nats_url).await
}

/// A deployment on MariaDB whose services connect as a database user of
/// their own, so that the statements they run can be counted.
pub async fn spawn_counted_deployment() -> (TestDeployment, StatementCounter) {
    let db = TestDatabase::new(Backend::MySql, "deploy");
    let (counter, url) = StatementCounter::create(&db.url).await;
    (spawn_deployment_over(db, url, &nats_url()).await, counter)
}

/// The statements one MariaDB user ran (`information_schema.USER_STATISTICS`,
/// with `userstat` on): every query of a deployment's services when they are
/// its only connections as that user.
pub struct StatementCounter {
    user: String,
    root: Url,
}

impl StatementCounter {
    /// A user with every right on the database of `db_url`; the URL to connect as them.
    pub async fn create(db_url: &Url) -> (Self, Url) {
        let database = db_url.path().trim_start_matches('/').to_owned();
        let user = format!("u{}", &database[database.len().saturating_sub(16)..]);
        let mut root = db_url.clone();
        root.set_path("mysql");
        let counter = Self { user: user.clone(), root };
        for statement in [
            "SET GLOBAL userstat = 1".to_owned(),
            format!("CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{user}'"),
            format!("GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'%'"),
        ] {
            counter.run(&statement).await;
        }
        let mut url = db_url.clone();
        url.set_username(&user).expect("a user name");
        url.set_password(Some(&user)).expect("a password");
        (counter, url)
    }

    async fn run(&self, statement: &str) {
        let db = sql_pool::Db::connect(&self.root, &sql_pool::PoolSettings::default()).await.expect("MariaDB");
        sqlx::query(statement).execute(&db.pool).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }

    /// Statements run so far by the user (selects, writes and the rest).
    pub async fn statements(&self) -> i64 {
        use sqlx::Row as _;
        let db = sql_pool::Db::connect(&self.root, &sql_pool::PoolSettings::default()).await.expect("MariaDB");
        let row = sqlx::query(
            "SELECT CAST(SELECT_COMMANDS + UPDATE_COMMANDS + OTHER_COMMANDS AS SIGNED) AS n \
             FROM information_schema.USER_STATISTICS WHERE USER = ?",
        )
        .bind(self.user.clone())
        .fetch_optional(&db.pool)
        .await
        .expect("USER_STATISTICS");
        row.map_or(0, |row| row.try_get("n").expect("a number"))
    }

    /// How many statements `work` made the services run.
    pub async fn during<T>(&self, work: impl Future<Output = T>) -> (T, i64) {
        let before = self.statements().await;
        let result = work.await;
        (result, self.statements().await - before)
    }
}

impl Drop for StatementCounter {
    fn drop(&mut self) {
        let (root, user) = (self.root.clone(), self.user.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let db = sql_pool::Db::connect(&root, &sql_pool::PoolSettings::default()).await.ok()?;
                sqlx::query(&format!("DROP USER IF EXISTS '{user}'@'%'")).execute(&db.pool).await.ok()
            })
        })
        .join();
    }
}

/// Every service as its own server on port 0, over `db` (the services
/// connecting with `services_url`) and the NATS server at `nats_url`.
async fn spawn_deployment_over(db: TestDatabase, services_url: Url, nats_url: &str) -> TestDeployment {
    telemetry::init_for_tests();
    let (stop, _) = watch::channel(false);
    let subjects = Subjects::new(unique_prefix("deploy")).expect("a valid prefix");
    let bus = NatsBus::connect(nats_url, "chat-tests").await.expect("NATS is reachable (tests/run.sh starts it)");
    // As deployed: every change through the services' outboxes into JetStream.
    let delivery = Delivery::jetstream(bus.clone(), subjects.clone(), StreamSettings::default());

    let mut settings =
        auth::Settings::from_env_with(services_url.clone(), SecretString::from(SECRET), security()).expect("settings");
    settings.grpc_addr = loopback();
    let auth = auth::Application::build(settings)
        .await
        .unwrap_or_else(|error| panic!("cannot start auth on MariaDB ({}): {error:#}", services_url));
    let auth_url = url_of(auth.local_addr());
    tokio::spawn(auth.run_until_stopped(until(&stop)));

    let mut settings =
        chat_metadata::Settings::from_env_with(services_url.clone(), SecretString::from(SECRET), security())
            .expect("settings");
    settings.grpc_addr = loopback();
    settings.auth_url = auth_url.clone();
    let metadata = chat_metadata::Application::build(settings, delivery.clone()).await.expect("chat-metadata starts");
    let metadata_url = url_of(metadata.local_addr());
    tokio::spawn(metadata.run_until_stopped(until(&stop)));

    let mut settings = message_store::Settings::from_env_with(
        services_url.clone(),
        message_store::ContentBackend::Sql,
        SecretString::from(SECRET),
        security(),
    )
    .expect("settings");
    settings.grpc_addr = loopback();
    settings.metadata_url = metadata_url.clone();
    let messages = message_store::Application::build(settings, delivery).await.expect("message-store starts");
    let messages_url = url_of(messages.local_addr());
    tokio::spawn(messages.run_until_stopped(until(&stop)));

    let services = ServiceUrls { auth: auth_url, metadata: metadata_url, messages: messages_url };
    let (gateway, metrics) = spawn_gateway_with_metrics(services.clone(), &subjects, nats_url, &stop, |_| {}).await;
    TestDeployment {
        nats_url: nats_url.to_owned(),
        base_url: format!("http://{gateway}"),
        metrics_url: format!("http://{metrics}/metrics"),
        http: reqwest::Client::new(),
        services,
        subjects,
        bus,
        db,
        stop,
    }
}

/// A gateway on port 0 in front of these services, on its own connection to
/// the real NATS server; it stops with `stop`.
pub async fn spawn_gateway(services: ServiceUrls, subjects: &Subjects, stop: &watch::Sender<bool>) -> SocketAddr {
    spawn_gateway_on(services, subjects, &nats_url(), stop).await
}

/// A gateway on port 0 on the NATS server at `nats_url`, with no rate limits
/// (tests send faster than people do; `spawn_gateway_limited` has them).
pub async fn spawn_gateway_on(
    services: ServiceUrls,
    subjects: &Subjects,
    nats_url: &str,
    stop: &watch::Sender<bool>,
) -> SocketAddr {
    spawn_gateway_limited(services, subjects, nats_url, stop, LimitSettings::OFF).await
}

/// A gateway on port 0 with these rate limits.
pub async fn spawn_gateway_limited(
    services: ServiceUrls,
    subjects: &Subjects,
    nats_url: &str,
    stop: &watch::Sender<bool>,
    limits: LimitSettings,
) -> SocketAddr {
    spawn_gateway_configured(services, subjects, nats_url, stop, |settings| settings.limits = limits).await
}

/// A gateway on port 0 with no rate limits but what `configure` sets.
pub async fn spawn_gateway_configured(
    services: ServiceUrls,
    subjects: &Subjects,
    nats_url: &str,
    stop: &watch::Sender<bool>,
    configure: impl FnOnce(&mut gateway::Settings),
) -> SocketAddr {
    spawn_gateway_with_metrics(services, subjects, nats_url, stop, configure).await.0
}

/// A gateway on port 0 with its metrics on another port 0; both addresses.
pub async fn spawn_gateway_with_metrics(
    services: ServiceUrls,
    subjects: &Subjects,
    nats_url: &str,
    stop: &watch::Sender<bool>,
    configure: impl FnOnce(&mut gateway::Settings),
) -> (SocketAddr, SocketAddr) {
    let mut settings = gateway::Settings::from_env_with(SecretString::from(SECRET), security()).expect("settings");
    settings.http_addr = loopback();
    settings.metrics_addr = Some(loopback());
    settings.services = services;
    settings.limits = LimitSettings::OFF;
    configure(&mut settings);
    let bus = NatsBus::connect(nats_url, "gateway").await.expect("NATS is reachable");
    let gateway = gateway::Application::build(settings, Arc::new(bus), subjects.clone()).await.expect("gateway starts");
    let (addr, metrics) = (gateway.local_addr(), gateway.metrics_addr().unwrap_or_else(loopback));
    tokio::spawn(gateway.run_until_stopped(until(stop)));
    (addr, metrics)
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

    /// What stops this deployment's servers (for servers a test adds to it).
    pub fn stop_signal(&self) -> &watch::Sender<bool> {
        &self.stop
    }

    /// A REST call to this deployment's gateway as `user`: the status, and the JSON body (null when none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &TestUser,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        rest_call(&self.http, &self.base_url, method, path, user, body).await
    }

    /// Another gateway replica in front of the same services.
    pub async fn another_gateway(&self) -> String {
        format!("http://{}", spawn_gateway_on(self.services.clone(), &self.subjects, &self.nats_url, &self.stop).await)
    }

    /// Another gateway replica, configured by `configure` (no rate limits unless it sets them).
    pub async fn gateway_with(&self, configure: impl FnOnce(&mut gateway::Settings)) -> String {
        let addr =
            spawn_gateway_configured(self.services.clone(), &self.subjects, &self.nats_url, &self.stop, configure);
        format!("http://{}", addr.await)
    }

    /// Another gateway replica, with these rate limits.
    pub async fn limited_gateway(&self, limits: LimitSettings) -> String {
        let addr = spawn_gateway_limited(self.services.clone(), &self.subjects, &self.nats_url, &self.stop, limits);
        format!("http://{}", addr.await)
    }

    /// `owner`'s direct chat with `other`, created over REST on the gateway at `base_url`; its id.
    pub async fn direct_chat(&self, base_url: &str, owner: &TestUser, other: &TestUser) -> i64 {
        let body = serde_json::json!({"chat_type": "direct", "participant_ids": [other.id]});
        let request = self.http.post(format!("{base_url}/api/v1/chats/")).bearer_auth(&owner.token).json(&body);
        let response = request.send().await.expect("the gateway answers");
        assert!(response.status().is_success(), "a direct chat: {}", response.status());
        let chat: serde_json::Value = response.json().await.expect("JSON");
        chat["id"].as_i64().expect("a chat id")
    }

    /// Registers and logs in a user whose name starts with `prefix`.
    pub async fn user(&self, prefix: &str) -> TestUser {
        register_user(&self.http, &self.base_url, prefix).await
    }
}

impl TestDeployment {
    /// A channel to a service, carrying the internal credential like the services' own.
    fn channel(url: &Url) -> GrpcChannel {
        grpc_channel::lazy(url, &security()).expect("a channel")
    }

    /// A gRPC client of the auth service.
    pub async fn auth(&self) -> AuthServiceClient<GrpcChannel> {
        AuthServiceClient::new(Self::channel(&self.services.auth))
    }

    /// A gRPC client of the chat-metadata service.
    pub async fn metadata(&self) -> ChatMetadataServiceClient<GrpcChannel> {
        ChatMetadataServiceClient::new(Self::channel(&self.services.metadata))
    }

    /// A gRPC client of the message-store service.
    pub async fn messages(&self) -> MessageStoreServiceClient<GrpcChannel> {
        MessageStoreServiceClient::new(Self::channel(&self.services.messages))
    }

    /// Subscribes to a chat's events subject on the real NATS server.
    pub async fn chat_events(
        &self,
        chat_id: i64,
    ) -> futures::stream::BoxStream<'static, chat_proto::events::ChatEvent> {
        use event_bus::Bus as _;
        use futures::StreamExt as _;
        let subscription = self.subjects.events_topic(chat_id).subscribe(&self.bus).await.expect("subscribed");
        self.bus.flush().await.expect("flushed");
        subscription.filter_map(|event| async move { event.ok() }).boxed()
    }
}

impl TestDeployment {
    /// Registers users straight through auth's gRPC (faster than logging in): their ids.
    pub async fn register_many(&self, prefix: &str, count: usize) -> Vec<i64> {
        let auth = self.auth().await;
        let registrations = (0..count).map(|_| {
            let mut auth = auth.clone();
            let name = format!("{prefix}{}", next_number());
            async move {
                let request = chat_proto::auth::RegisterRequest {
                    username: name.clone(),
                    email: format!("{name}@example.com"),
                    password: "password-123".into(),
                    full_name: None,
                };
                auth.register(request).await.expect("registered").into_inner().id
            }
        });
        futures::future::join_all(registrations).await
    }
}

impl TestDeployment {
    /// Reads a chat's `is_active` straight from the database.
    pub async fn db_chat_is_active(&self, chat_id: i64) -> bool {
        use sqlx::Row as _;
        let db = sql_pool::Db::connect(&self.db.url, &sql_pool::PoolSettings::default()).await.expect("the database");
        let row = sqlx::query("SELECT is_active FROM chats WHERE id = ?")
            .bind(chat_id)
            .fetch_one(&db.pool)
            .await
            .expect("the chat");
        row.try_get::<i64, _>("is_active").expect("a flag") != 0
    }

    /// The `n` of a `SELECT COUNT(*) AS n ...` straight from the database.
    pub async fn db_count(&self, sql: &str) -> i64 {
        use sqlx::Row as _;
        let db = sql_pool::Db::connect(&self.db.url, &sql_pool::PoolSettings::default()).await.expect("the database");
        sqlx::query(sql).fetch_one(&db.pool).await.expect("a count").try_get("n").expect("a number")
    }

    /// How many rows of the SQL content store hold this content id.
    pub async fn db_content_rows(&self, content_like: &str) -> i64 {
        use sqlx::Row as _;
        let db = sql_pool::Db::connect(&self.db.url, &sql_pool::PoolSettings::default()).await.expect("the database");
        let row = sqlx::query("SELECT COUNT(*) AS n FROM message_contents WHERE content = ?")
            .bind(content_like.to_owned())
            .fetch_one(&db.pool)
            .await
            .expect("a count");
        row.try_get("n").expect("a number")
    }
}

impl TestDeployment {
    /// A gateway replica as a process of its own (the built `gateway` binary), so a test can kill it.
    pub fn gateway_process(&self, replica: &str) -> GatewayProcess {
        self.gateway_process_with(replica, &[])
    }

    /// A gateway process with these further variables.
    pub fn gateway_process_with(&self, replica: &str, env: &[(&str, &str)]) -> GatewayProcess {
        let port = free_port();
        let mut variables = vec![
            ("SECRET_KEY", SECRET.to_owned()),
            ("INTERNAL_TOKEN", INTERNAL_TOKEN.to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("AUTH_GRPC_URL", self.services.auth.to_string()),
            ("METADATA_GRPC_URL", self.services.metadata.to_string()),
            ("MESSAGES_GRPC_URL", self.services.messages.to_string()),
            ("NATS_URL", self.nats_url.clone()),
            ("NATS_SUBJECT_PREFIX", self.subjects.prefix().to_owned()),
            ("GATEWAY_REPLICA", replica.to_owned()),
            ("MESSAGE_RATE_PER_SECOND", "0".to_owned()),
            ("REGISTRATIONS_PER_MINUTE", "0".to_owned()),
            ("METRICS_ADDR", "off".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        variables.extend(env.iter().map(|(name, value)| (*name, (*value).to_owned())));
        ServiceProcess::spawn("gateway", &variables, format!("http://127.0.0.1:{port}"))
    }

    /// message-store as a process of its own on `port` (so a test can kill it
    /// and start it again on the same address), on this deployment's
    /// database, chat-metadata and NATS, with SQL content.
    pub fn message_store_process(&self, port: u16) -> ServiceProcess {
        let variables = [
            ("SECRET_KEY", SECRET.to_owned()),
            ("INTERNAL_TOKEN", INTERNAL_TOKEN.to_owned()),
            ("DATABASE_URL", self.db.url.to_string()),
            ("CONTENT_STORE", "sql".to_owned()),
            ("MESSAGES_GRPC_ADDR", format!("127.0.0.1:{port}")),
            ("METADATA_GRPC_URL", self.services.metadata.to_string()),
            ("NATS_URL", self.nats_url.clone()),
            ("NATS_SUBJECT_PREFIX", self.subjects.prefix().to_owned()),
            ("METRICS_ADDR", "off".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        ServiceProcess::spawn("message-store", &variables, format!("http://127.0.0.1:{port}"))
    }
}

/// A free port on loopback (free when asked: bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

/// One event as the JetStream stream keeps it.
#[derive(Debug, Clone)]
pub struct StreamedEvent {
    /// Its `Nats-Msg-Id`.
    pub msg_id: String,
    pub subject: String,
    pub event: chat_proto::events::ChatEvent,
}

/// Everything in the events stream of `subjects` on the NATS server at `nats_url`, oldest first.
pub async fn read_stream(nats_url: &str, subjects: &Subjects) -> Vec<StreamedEvent> {
    use prost::Message as _;
    let client = async_nats::connect(nats_url).await.expect("NATS is reachable");
    let jetstream = async_nats::jetstream::new(client);
    let Ok(stream) = jetstream.get_stream(outbox::stream::name(subjects)).await else { return Vec::new() };
    let state = stream.get_info().await.expect("the stream's info").state;
    let mut events = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let message = stream.get_raw_message(sequence).await.expect("a stored message");
        events.push(StreamedEvent {
            msg_id: message.headers.get("Nats-Msg-Id").map(|id| id.to_string()).unwrap_or_default(),
            subject: message.subject.to_string(),
            event: chat_proto::events::ChatEvent::decode(message.payload).expect("a ChatEvent"),
        });
    }
    events
}

/// Waits (up to `within`) until the events stream holds at least `count`
/// events, and a moment more for any that should not be there; then all of them.
pub async fn await_stream(
    nats_url: &str,
    subjects: &Subjects,
    count: usize,
    within: std::time::Duration,
) -> Vec<StreamedEvent> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let events = read_stream(nats_url, subjects).await;
        if events.len() >= count || tokio::time::Instant::now() >= deadline {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return read_stream(nats_url, subjects).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The path of a binary of this workspace, built beside the test binaries.
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let binary = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it first (tests/run.sh does: cargo build --workspace --bins)",
        binary.display()
    );
    binary
}

/// A gateway running as a child process.
pub type GatewayProcess = ServiceProcess;

/// Registers and logs in, on the gateway at `base_url`, a user whose name starts with `prefix`.
pub async fn register_user(http: &reqwest::Client, base_url: &str, prefix: &str) -> TestUser {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let username = format!("{prefix}_{n}_{}", std::process::id());
    let email = format!("{username}@example.com");
    let password = "password-123".to_owned();
    let body = serde_json::json!({"username": username, "email": email, "password": password});
    let response = http.post(format!("{base_url}/api/v1/users/register")).json(&body).send().await.expect("register");
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    let user: serde_json::Value = response.json().await.expect("JSON");
    let login = serde_json::json!({"username": username, "password": password});
    let response = http.post(format!("{base_url}/api/v1/users/login")).json(&login).send().await.expect("login");
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

/// A REST call to the gateway at `base_url` as `user`: the status, and the JSON body (null when none).
pub async fn rest_call(
    http: &reqwest::Client,
    base_url: &str,
    method: reqwest::Method,
    path: &str,
    user: &TestUser,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = http.request(method, format!("{base_url}{path}")).bearer_auth(&user.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the gateway answers");
    (response.status().as_u16(), response.json().await.unwrap_or(serde_json::Value::Null))
}

/// The standalone `chat-server` binary on `port`, its data in `data_dir`
/// (no rate limits: tests send faster than people do).
pub fn standalone_server(data_dir: &std::path::Path, port: u16) -> ServiceProcess {
    let variables = [
        ("DATA_DIR", data_dir.display().to_string()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("METRICS_ADDR", "off".to_owned()),
        ("MESSAGE_RATE_PER_SECOND", "0".to_owned()),
        ("REGISTRATIONS_PER_MINUTE", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    ServiceProcess::spawn("chat-server", &variables, format!("http://127.0.0.1:{port}"))
}

/// A binary of this workspace running as a child process; killed when dropped.
pub struct ServiceProcess {
    child: std::process::Child,
    pub base_url: String,
}

impl ServiceProcess {
    /// Starts the built binary `name` with only these variables.
    pub fn spawn(name: &str, variables: &[(&str, String)], base_url: String) -> Self {
        // TEST_LOG=1 shows what the processes log, as it does the test's own.
        let output = || {
            if std::env::var_os("TEST_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            }
        };
        let child = std::process::Command::new(built_binary(name))
            .env_clear()
            .envs(variables.iter().map(|(name, value)| (*name, value.as_str())))
            .envs(std::env::var("TEST_PROCESS_LOG").ok().map(|filter| ("RUST_LOG", filter)))
            .current_dir(std::env::temp_dir())
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|error| panic!("the {name} binary starts: {error}"));
        Self { child, base_url }
    }

    /// Waits until it answers gRPC health checks as serving.
    pub async fn ready_grpc(&self) {
        let url = Url::parse(&self.base_url).expect("a URL");
        for _ in 0..100 {
            if grpc_channel::is_serving(grpc_channel::lazy(&url, &security()).expect("a channel")).await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the process at {} never served gRPC", self.base_url);
    }

    /// Waits until it answers `/health` with 200.
    pub async fn ready(&self) {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{}/health", self.base_url)).send().await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the process at {} never became healthy", self.base_url);
    }

    /// SIGTERM, as Kubernetes stops a pod: the process drains and exits by itself.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM was delivered");
    }

    /// Waits up to `within` for the process to exit; its exit code (None: still running, or a signal).
    pub async fn exited(&mut self, within: std::time::Duration) -> Option<Option<i32>> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL: no goodbye to its clients, no last heartbeat.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `nats-server` of the test's own, on a free port, with JetStream (its
/// store survives a restart), that the test may stop and restart.
pub struct NatsProcess {
    child: Option<std::process::Child>,
    pub port: u16,
    args: Vec<String>,
    store: std::path::PathBuf,
}

impl NatsProcess {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with these further arguments (e.g. `--user`, `--pass`).
    pub fn start_with(args: &[&str]) -> Self {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
        let args = args.iter().map(|arg| (*arg).to_owned()).collect();
        let store = std::env::temp_dir().join(format!("chat-test-nats-{}-{port}", std::process::id()));
        let mut nats = Self { child: None, port, args, store };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is on the PATH (tests/run.sh checks)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nats-server did not start on port {}", self.port);
    }
}

impl Drop for NatsProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
