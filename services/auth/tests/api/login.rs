//! Login and the access tokens it issues.

use chat_proto::auth as pb;
use sql_pool::Backend;
use tonic::Code;

use sql_pool::on_both_backends;

use crate::helpers::{SECRET, registration, spawn_app};

async fn login_by_username_or_email_issues_a_verifiable_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = registration("ada");
    let user = app.register(request.clone()).await.expect("registered");
    for name in [request.username.clone(), request.username.to_uppercase(), request.email.to_uppercase()] {
        let response = app.login(&name, &request.password).await.expect("logged in");
        assert_eq!(response.token_type, "bearer");
        assert_eq!(response.expires_in, 30 * 60);
        let logged_in = response.user.expect("the user");
        assert_eq!(logged_in.id, user.id);
        assert!(logged_in.last_seen_ms.is_some());

        let verified = app
            .client
            .clone()
            .verify_token(pb::VerifyTokenRequest { access_token: response.access_token.clone() })
            .await
            .expect("verified")
            .into_inner();
        assert_eq!(verified.user_id, user.id);

        let settings = access_token::TokenSettings {
            secret: SECRET.into(),
            algorithm: access_token::Algorithm::HS256,
            ttl: std::time::Duration::from_secs(60),
        };
        let local = access_token::TokenVerifier::new(&settings).verify(&response.access_token).expect("verifies");
        assert_eq!((local.user_id, local.username.as_str()), (user.id, request.username.as_str()));
    }
}
on_both_backends!(login_by_username_or_email_issues_a_verifiable_token);

async fn wrong_password_and_unknown_user_are_the_same_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = registration("bob");
    app.register(request.clone()).await.expect("registered");
    let wrong_password = app.login(&request.username, "not-the-password").await.expect_err("refused");
    let unknown_user = app.login("nobody-at-all", "not-the-password").await.expect_err("refused");
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(unknown_user.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), unknown_user.message());
}
on_both_backends!(wrong_password_and_unknown_user_are_the_same_error);

async fn a_forged_token_does_not_verify(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = app
        .client
        .clone()
        .verify_token(pb::VerifyTokenRequest { access_token: "not.a.jwt".into() })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
}
on_both_backends!(a_forged_token_does_not_verify);
