//! Bad input gets the API.md status and a JSON body, never a 500.

use chat_tests::spawn_deployment;
use serde_json::Value;

async fn detail_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("application/json"), "a JSON error body, got {content_type:?}");
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().is_some_and(|detail| !detail.is_empty()), "{body}");
    (status, body)
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_deployment().await;
    let huge = serde_json::json!({"username": "x".repeat(70 * 1024), "email": "a@b.co", "password": "password-1"});
    let response = app.http.post(app.url("/api/v1/users/register")).json(&huge).send().await.unwrap();
    assert_eq!(detail_of(response).await.0, 413);
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_422_naming_the_field() {
    let app = spawn_deployment().await;
    let response = app
        .http
        .post(app.url("/api/v1/users/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    let (status, body) = detail_of(response).await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], "body");

    let wrong_type = serde_json::json!({"username": 12345, "email": "a@b.co", "password": "password-1"});
    let response = app.http.post(app.url("/api/v1/users/register")).json(&wrong_type).send().await.unwrap();
    let (status, body) = detail_of(response).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (422, Some("username")));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_deployment().await;
    let (status, _) = detail_of(app.http.get(app.url("/api/v1/nothing-here")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    let (status, _) = detail_of(app.http.delete(app.url("/api/v1/users/register")).send().await.unwrap()).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_non_numeric_id_in_the_path_is_422() {
    let app = spawn_deployment().await;
    let user = app.user("ids").await;
    let response = app.http.get(app.url("/api/v1/users/abc")).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(detail_of(response).await.0, 422);
}

#[tokio::test]
async fn missing_bad_and_foreign_tokens_are_401_with_a_bearer_challenge() {
    let app = spawn_deployment().await;
    let user = app.user("tokens").await;
    let foreign = {
        let settings = access_token::TokenSettings {
            secret: "another-deployment-secret-0123456789".into(),
            algorithm: access_token::Algorithm::HS256,
            ttl: std::time::Duration::from_secs(60),
        };
        access_token::TokenIssuer::new(&settings).issue(user.id, &user.username, 0).unwrap()
    };
    let requests = [
        app.http.get(app.url("/api/v1/users/me")),
        app.http.get(app.url("/api/v1/users/me")).bearer_auth("not.a.jwt"),
        app.http.get(app.url("/api/v1/users/me")).bearer_auth(foreign),
        app.http.get(app.url("/api/v1/users/me")).header("authorization", format!("Basic {}", user.token)),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(detail_of(response).await.0, 401);
    }
}
