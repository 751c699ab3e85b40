//! The users API end to end: gateway → gRPC → auth → MariaDB.

use chat_tests::spawn_deployment;
use serde_json::{Value, json};

#[tokio::test]
async fn a_registered_user_logs_in_by_json_or_form_and_reads_their_profile() {
    let app = spawn_deployment().await;
    let user = app.user("ada").await;
    let form = [("username", user.email.to_uppercase()), ("password", user.password.clone())];
    let response = app.http.post(app.url("/api/v1/users/login")).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "bearer");
    assert_eq!(token["expires_in"], 1800);

    let me: Value = app
        .http
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((me["id"].as_i64(), me["email"].as_str()), (Some(user.id), Some(user.email.as_str())));
    assert!(me["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')), "login sets last_seen: {me}");
}

#[tokio::test]
async fn wrong_credentials_are_one_401() {
    let app = spawn_deployment().await;
    let user = app.user("bob").await;
    let mut bodies = Vec::new();
    for (username, password) in [(user.username.as_str(), "wrong-password"), ("nobody_here", "wrong-password")] {
        let response = app
            .http
            .post(app.url("/api/v1/users/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1], "wrong user and wrong password look the same");
}

#[tokio::test]
async fn profile_updates_refuse_unknown_fields_and_need_the_current_password() {
    let app = spawn_deployment().await;
    let user = app.user("carol").await;
    let put = |body: Value| app.http.put(app.url("/api/v1/users/me")).bearer_auth(&user.token).json(&body).send();

    let response = put(json!({"nickname": "cc"})).await.unwrap();
    assert_eq!(response.status(), 422);
    let response = put(json!({"password": "new-password-1"})).await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "current_password");
    let response = put(json!({"password": "new-password-1", "current_password": "nope-nope"})).await.unwrap();
    assert_eq!(response.status(), 400);

    let response = put(json!({"full_name": "Carol C", "email": "Carol.New@Example.com"})).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["full_name"].as_str(), body["email"].as_str()), (Some("Carol C"), Some("carol.new@example.com")));
    let cleared: Value = put(json!({"full_name": null})).await.unwrap().json().await.unwrap();
    assert_eq!(cleared["full_name"], Value::Null);
}

#[tokio::test]
async fn search_never_returns_the_caller_and_checks_its_parameters() {
    let app = spawn_deployment().await;
    let caller = app.user("zed_search").await;
    let other = app.user("zed_search").await;
    let search = |query: &'static str| {
        app.http.get(format!("{}{query}", app.url("/api/v1/users/search"))).bearer_auth(&caller.token).send()
    };
    let found: Vec<Value> = search("?q=ZED_SEARCH").await.unwrap().json().await.unwrap();
    let ids: Vec<i64> = found.iter().filter_map(|user| user["id"].as_i64()).collect();
    assert_eq!(ids, vec![other.id]);
    assert!(found[0].get("email").is_none(), "search shows public users");
    for bad in ["", "?q=", "?q=abc&limit=0", "?q=abc&limit=101", "?q=abc&limit=x", "?q=abc&offset=-1"] {
        assert_eq!(search(bad).await.unwrap().status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn users_are_looked_up_by_id_publicly() {
    let app = spawn_deployment().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let response =
        app.http.get(app.url(&format!("/api/v1/users/{}", bob.id))).bearer_auth(&ada.token).send().await.unwrap();
    let found: Value = response.json().await.unwrap();
    assert_eq!((found["id"].as_i64(), found.get("email")), (Some(bob.id), None));
    let missing = app.http.get(app.url("/api/v1/users/9007199254740991")).bearer_auth(&ada.token).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_password_change_revokes_every_earlier_token_on_every_replica() {
    let app = spawn_deployment().await;
    let other_replica = app.another_gateway().await;
    let user = app.user("rotate").await;
    let login = |base: String, password: String| {
        let body = json!({"username": user.username, "password": password});
        let request = app.http.post(format!("{base}/api/v1/users/login")).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let me = |base: &str, token: &str| app.http.get(format!("{base}/api/v1/users/me")).bearer_auth(token).send();
    let other_device = login(other_replica.clone(), user.password.clone()).await;
    assert_eq!(me(&other_replica, &other_device).await.unwrap().status(), 200);

    let change = json!({"password": "a-brand-new-password", "current_password": user.password});
    let response =
        app.http.put(app.url("/api/v1/users/me")).bearer_auth(&user.token).json(&change).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // On the replica that made the change: at once, for this token and the other device's.
    for token in [&user.token, &other_device] {
        let response = me(&app.base_url, token).await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");
    }
    // On the other replica: within its poll of auth.
    let mut revoked_there = false;
    for _ in 0..50 {
        if me(&other_replica, &other_device).await.unwrap().status() == 401 {
            revoked_there = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(revoked_there, "the other replica refuses the old token within seconds");
    // A token issued after the change works everywhere.
    let fresh = login(app.base_url.clone(), "a-brand-new-password".into()).await;
    for base in [&app.base_url, &other_replica] {
        assert_eq!(me(base, &fresh).await.unwrap().status(), 200);
    }
}
