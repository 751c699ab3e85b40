//! Rate limits on a gateway that has them: writes per user (REST and
//! WebSocket), registrations per address; failed logins per account and
//! address (kept by auth, on by default).

use std::time::Duration;

use chat_tests::{spawn_deployment, ws::ChatSocket};
use gateway::limits::{LimitSettings, Rate};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

/// Three writes at once, then one every ten seconds; two registrations a minute.
const TIGHT: LimitSettings = LimitSettings {
    writes: Rate { per_second: 0.1, burst: 3.0 },
    registrations: Rate { per_second: 2.0 / 60.0, burst: 2.0 },
};

/// Failed logins of one account from one address that auth allows a minute (its default).
const LOGIN_FAILURES: usize = 10;

#[tokio::test]
async fn writes_past_the_limit_are_429_with_retry_after_per_user() {
    let app = spawn_deployment().await;
    let base = app.limited_gateway(TIGHT).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = app.direct_chat(&base, &alice, &bob).await;
    let send = |user: &chat_tests::TestUser| {
        let body = json!({"chat_id": chat_id, "content": "hi"});
        app.http.post(format!("{base}/api/v1/messages/")).bearer_auth(&user.token).json(&body).send()
    };
    let first = send(&alice).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(send(&alice).await.unwrap().status(), 201);

    // An edit spends a write too: the burst of three is gone.
    let edit = app
        .http
        .put(format!("{base}/api/v1/messages/{}", first["id"]))
        .bearer_auth(&alice.token)
        .json(&json!({"content": "edited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edit.status(), 200);

    let limited = send(&alice).await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = limited.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");

    assert_eq!(send(&bob).await.unwrap().status(), 201, "bob has his own budget");
    // Reads are not limited.
    let history = app.http.get(format!("{base}/api/v1/messages/chat/{chat_id}")).bearer_auth(&alice.token);
    assert_eq!(history.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_limited_websocket_send_gets_an_error_frame_and_the_socket_stays_open() {
    let app = spawn_deployment().await;
    let base = app.limited_gateway(TIGHT).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat_id = app.direct_chat(&base, &alice, &bob).await;
    let mut socket = ChatSocket::connect_ready(&base, chat_id, &alice.token, None).await.unwrap();
    for n in 0..3 {
        socket.send(&json!({"type": "message", "content": format!("m{n}")})).await.unwrap();
        assert_eq!(socket.expect("new_message", WAIT).await.unwrap()["message"]["content"], format!("m{n}"));
    }
    socket.send(&json!({"type": "message", "content": "one too many", "client_msg_id": "k-4"})).await.unwrap();
    let error = socket.expect("error", WAIT).await.unwrap();
    assert_eq!(error["code"], "rate_limited");
    assert_eq!(error["client_msg_id"], "k-4");
    socket.send(&json!({"type": "ping"})).await.unwrap();
    assert!(socket.expect("pong", WAIT).await.is_ok(), "the socket stays open");
}

/// A gateway that believes `X-Forwarded-For` from this machine (as from a load balancer).
async fn behind_a_proxy(app: &chat_tests::TestDeployment) -> String {
    app.gateway_with(|settings| {
        settings.limits = TIGHT;
        settings.trusted_proxies = gateway::client_addr::TrustedProxies::parse("127.0.0.1, ::1").unwrap();
    })
    .await
}

#[tokio::test]
async fn failed_logins_are_counted_per_account_whatever_the_spelling_and_the_owner_elsewhere_is_not_locked_out() {
    let app = spawn_deployment().await;
    let base = behind_a_proxy(&app).await;
    let (gina, bob) = (app.user("gina").await, app.user("bob").await);
    let login = |username: String, password: &str, from: &str| {
        let body = json!({"username": username, "password": password});
        app.http.post(format!("{base}/api/v1/users/login")).header("x-forwarded-for", from).json(&body).send()
    };
    let attacker = "198.51.100.66";
    assert_eq!(
        login(gina.username.clone(), &gina.password, attacker).await.unwrap().status(),
        200,
        "successes are free"
    );
    for _ in 0..LOGIN_FAILURES {
        assert_eq!(login(gina.username.clone(), "wrong-password-1", attacker).await.unwrap().status(), 401);
    }
    // The bypasses a review found: spacing, case, and the email all name the same account.
    let spellings = [
        gina.username.clone(),
        format!(" {}", gina.username),
        format!("{} ", gina.username),
        format!("\t{}", gina.username),
        gina.username.to_uppercase(),
        gina.email.clone(),
        gina.email.to_uppercase(),
    ];
    for spelling in spellings {
        let limited = login(spelling.clone(), &gina.password, attacker).await.unwrap();
        assert_eq!(limited.status(), 429, "{spelling:?}: even the right password, for a while");
        let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    }
    // The attacker cannot lock gina out: from her own address she logs in.
    assert_eq!(login(gina.username.clone(), &gina.password, "192.0.2.10").await.unwrap().status(), 200);
    assert_eq!(login(bob.username.clone(), &bob.password, attacker).await.unwrap().status(), 200, "bob is not slowed");
}

#[tokio::test]
async fn concurrent_wrong_logins_cannot_exceed_the_limit() {
    let app = spawn_deployment().await;
    let gina = app.user("gina").await;
    let attempts = (0..24).map(|_| {
        let body = json!({"username": gina.username, "password": "wrong-password-2"});
        app.http.post(app.url("/api/v1/users/login")).json(&body).send()
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|status| **status == 401).count();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!((checked, limited), (LOGIN_FAILURES, 24 - LOGIN_FAILURES), "{statuses:?}");
}

#[tokio::test]
async fn registrations_are_limited_per_client_address_which_only_a_trusted_proxy_may_name() {
    let app = spawn_deployment().await;
    let register = |base: &str, from: &str| {
        let name = format!("reg{}", uuid_like());
        let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password-123"});
        app.http.post(format!("{base}/api/v1/users/register")).header("x-forwarded-for", from).json(&body).send()
    };
    let proxied = behind_a_proxy(&app).await;
    for _ in 0..2 {
        assert_eq!(register(&proxied, "198.51.100.7").await.unwrap().status(), 201);
    }
    let limited = register(&proxied, "198.51.100.7").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(register(&proxied, "198.51.100.8").await.unwrap().status(), 201, "another address has its own budget");

    // Without TRUSTED_PROXIES the header is the client's word, and ignored: every request is the peer's.
    let direct = app.limited_gateway(TIGHT).await;
    for from in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(register(&direct, from).await.unwrap().status(), 201);
    }
    assert_eq!(register(&direct, "203.0.113.3").await.unwrap().status(), 429, "a spoofed header buys nothing");
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn guessing_the_current_password_of_a_password_change_is_limited_like_a_login() {
    let app = spawn_deployment().await;
    let victim = app.user("stolen").await;
    let guess = |n: usize| {
        let body = json!({"password": "a-brand-new-password", "current_password": format!("guess-{n}-xyz")});
        app.http.put(app.url("/api/v1/users/me")).bearer_auth(&victim.token).json(&body).send()
    };
    for n in 0..LOGIN_FAILURES {
        assert_eq!(guess(n).await.unwrap().status(), 400, "a wrong current password");
    }
    let limited = guess(LOGIN_FAILURES).await.unwrap();
    assert_eq!(limited.status(), 429, "the thief with a stolen token is slowed like a guesser");
    assert!(limited.headers().contains_key("retry-after"));
}
