//! System endpoints, the docs pages, and what happens when a service is down.

use chat_tests::{SECRET, spawn_deployment, spawn_gateway};
use serde_json::Value;
use tokio::sync::watch;

#[tokio::test]
async fn health_names_its_checks_and_info_its_limits() {
    let app = spawn_deployment().await;
    let health: Value = app.http.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "checks": {"auth": "ok", "chat_metadata": "ok", "message_store": "ok"}})
    );
    let info: Value = app.http.get(app.url("/api/v1/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["limits"], serde_json::json!({"max_message_length": 10000, "max_group_members": 100}));
    let root: Value = app.http.get(app.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!((root["name"].as_str(), root["docs"].as_str()), (Some("chat-service"), Some("/docs")));
}

#[tokio::test]
async fn docs_pages_and_their_assets_are_served_by_the_gateway() {
    let app = spawn_deployment().await;
    let swagger = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(swagger.status(), 200);
    let page = swagger.text().await.unwrap();
    assert!(page.contains("swagger-ui"));
    for asset in
        ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-initializer.js", "/docs/index.css"]
    {
        assert!(page.contains(asset), "/docs links {asset}");
        let response = app.http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let initializer = app.http.get(app.url("/docs/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "Swagger UI loads our spec");

    let redoc = app.http.get(app.url("/redoc")).send().await.unwrap().text().await.unwrap();
    assert!(redoc.contains("Redoc.init(\"/openapi.json\""), "ReDoc loads our spec");
    assert!(!redoc.contains("<script src=\"http"), "ReDoc's bundle is inline, not from a CDN");
}

#[tokio::test]
async fn the_spec_describes_the_users_api_and_its_security() {
    let app = spawn_deployment().await;
    let spec: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/v1/users/register", "/api/v1/users/login", "/api/v1/users/me", "/api/v1/users/search"] {
        assert!(spec["paths"][path].is_object(), "{path} is described");
    }
    assert!(spec["paths"]["/api/v1/users/me"]["get"]["security"].is_array(), "me needs a token");
    assert!(spec["paths"]["/api/v1/users/login"]["post"]["security"].is_null(), "login does not");
    assert_eq!(spec["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["tokenUrl"], "/api/v1/users/login");
}

/// A port nothing listens on (bound, then released).
async fn free_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn auth_down_is_503_and_the_gateway_recovers_when_it_comes_back() {
    let auth_addr = free_port().await;
    let (stop, _) = watch::channel(false);
    let url = |addr: std::net::SocketAddr| url::Url::parse(&format!("http://{addr}")).unwrap();
    let services = gateway::config::ServiceUrls {
        auth: url(auth_addr),
        metadata: url(free_port().await),
        messages: url(free_port().await),
    };
    let subjects = event_bus::Subjects::new(chat_tests::unique_prefix("outage")).unwrap();
    let gateway = format!("http://{}", spawn_gateway(services, &subjects, &stop).await);
    let http = reqwest::Client::new();

    let health = http.get(format!("{gateway}/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.headers()["retry-after"], "1", "every 503 says when to retry");
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["auth"], "unavailable");
    let login = serde_json::json!({"username": "someone", "password": "whatever-1"});
    let refused = http.post(format!("{gateway}/api/v1/users/login")).json(&login).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("unavailable"), "{body}");

    // Auth comes up on the address the gateway was given: no restart of the gateway needed.
    let db = sql_pool::testing::TestDatabase::new(sql_pool::Backend::MySql, "recover");
    let mut settings = auth::Settings::from_env_with(db.url.clone(), SECRET.into(), chat_tests::security()).unwrap();
    settings.grpc_addr = auth_addr;
    let auth = auth::Application::build(settings).await.unwrap();
    let mut stopped = stop.subscribe();
    tokio::spawn(auth.run_until_stopped(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    let mut auth_check = Value::Null;
    for _ in 0..50 {
        let health: Value = http.get(format!("{gateway}/health")).send().await.unwrap().json().await.unwrap();
        auth_check = health["checks"]["auth"].clone();
        if auth_check == "ok" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(auth_check, "ok", "the gateway reconnects to auth by itself");
    let answered = http.post(format!("{gateway}/api/v1/users/login")).json(&login).send().await.unwrap();
    assert_eq!(answered.status(), 401, "auth answers again: the user is unknown");
    let _ = stop.send(true);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_calls_by_method() {
    let app = spawn_deployment().await;
    let user = app.user("metrics").await;
    let me = app.http.get(app.url("/api/v1/users/me")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let other = app.http.get(app.url(&format!("/api/v1/users/{}", user.id))).bearer_auth(&user.token).send().await;
    assert_eq!(other.unwrap().status(), 200);

    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics are not on the public port");
    let response = app.http.get(&app.metrics_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"chat_http_requests_total{method="GET",route="/api/v1/users/me",status="200"}"#,
        // The route template, never the raw path.
        r#"chat_http_requests_total{method="GET",route="/api/v1/users/{user_id}",status="200"}"#,
        r#"chat_http_request_duration_seconds_count{method="GET",route="/api/v1/users/me"}"#,
        r#"chat_grpc_server_requests_total{method="chat.auth.v1.AuthService/Register",code="Ok"}"#,
        "chat_ws_connections ",
        "process_resident_memory_bytes ",
    ] {
        assert!(text.contains(expected), "/metrics has {expected}:\n{text}");
    }
    assert!(!text.contains(&format!("/api/v1/users/{}", user.id)), "no raw paths as labels");
}

#[tokio::test]
async fn a_grpc_service_serves_its_metrics_on_metrics_addr() {
    let db = sql_pool::testing::TestDatabase::new(sql_pool::Backend::Sqlite, "metrics");
    let mut settings = auth::Settings::from_env_with(db.url.clone(), SECRET.into(), chat_tests::security()).unwrap();
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let auth = auth::Application::build(settings).await.unwrap();
    let (grpc, metrics) = (auth.local_addr(), auth.metrics_addr().expect("a metrics listener"));
    let (stop, _) = watch::channel(false);
    tokio::spawn(auth.run_until_stopped(chat_tests::until(&stop)));

    let channel = grpc_channel::lazy(&format!("http://{grpc}").parse().unwrap(), &chat_tests::security()).unwrap();
    let mut client = chat_proto::auth::auth_service_client::AuthServiceClient::new(channel);
    let missing = client.get_user(chat_proto::auth::GetUserRequest { id: 424_242 }).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let text = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"chat_grpc_server_requests_total{method="chat.auth.v1.AuthService/GetUser",code="NotFound"}"#),
        "{text}"
    );
    let _ = stop.send(true);
}

#[tokio::test]
async fn a_grpc_service_says_not_serving_first_when_it_stops_and_exits_within_its_grace() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let db = sql_pool::testing::TestDatabase::new(sql_pool::Backend::Sqlite, "drain");
    let mut settings = auth::Settings::from_env_with(db.url.clone(), SECRET.into(), chat_tests::security()).unwrap();
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.shutdown_grace = std::time::Duration::from_secs(1);
    let auth = auth::Application::build(settings).await.unwrap();
    let url = format!("http://{}", auth.local_addr()).parse().unwrap();
    let (stop, _) = watch::channel(false);
    let server = tokio::spawn(auth.run_until_stopped(chat_tests::until(&stop)));

    // A balancer watching the service's health, as it runs.
    let channel = grpc_channel::lazy(&url, &chat_tests::security()).unwrap();
    let mut watch =
        HealthClient::new(channel).watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let wait = std::time::Duration::from_secs(5);
    let mut status = tokio::time::timeout(wait, watch.message()).await.unwrap().unwrap().unwrap().status;
    for _ in 0..20 {
        if status == ServingStatus::Serving as i32 {
            break;
        }
        status = tokio::time::timeout(wait, watch.message()).await.unwrap().unwrap().unwrap().status;
    }
    assert_eq!(status, ServingStatus::Serving as i32);

    let stopping = std::time::Instant::now();
    stop.send(true).unwrap();
    // A periodic SERVING may still be on its way; NOT_SERVING must follow while the watch is open.
    let mut not_serving = false;
    for _ in 0..5 {
        let next = tokio::time::timeout(wait, watch.message()).await.expect("an answer in time").unwrap();
        if next.is_some_and(|next| next.status == ServingStatus::NotServing as i32) {
            not_serving = true;
            break;
        }
    }
    assert!(not_serving, "NOT_SERVING before anything stops");
    // The watch is a call in flight that never ends: the grace period bounds the drain.
    tokio::time::timeout(wait, server).await.expect("stopped").unwrap().unwrap();
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(4),
        "within its grace of 1 s: {:?}",
        stopping.elapsed()
    );
}
