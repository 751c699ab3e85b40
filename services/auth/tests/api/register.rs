//! Registration.

use sql_pool::Backend;
use tonic::Code;

use sql_pool::on_both_backends;

use crate::helpers::{field_of, registration, spawn_app};

async fn registered_user_is_returned_with_a_lowercase_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut request = registration("ada");
    request.email = request.email.to_uppercase();
    request.full_name = Some("Ada Lovelace".into());
    let user = app.register(request.clone()).await.expect("registered");
    assert!(user.id > 0);
    assert_eq!(user.username, request.username);
    assert_eq!(user.email, request.email.to_lowercase());
    assert_eq!(user.full_name.as_deref(), Some("Ada Lovelace"));
    assert!(user.is_active);
    assert!(user.created_at_ms > 1_700_000_000_000);
    assert_eq!(user.last_seen_ms, None);
}
on_both_backends!(registered_user_is_returned_with_a_lowercase_email);

async fn username_and_email_are_unique_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = registration("bob");
    app.register(first.clone()).await.expect("registered");

    let mut same_name = registration("other");
    same_name.username = first.username.to_uppercase();
    let status = app.register(same_name).await.expect_err("duplicate username");
    assert_eq!((status.code(), field_of(&status)), (Code::AlreadyExists, "username"));

    let mut same_email = registration("other");
    same_email.email = first.email.to_uppercase();
    let status = app.register(same_email).await.expect_err("duplicate email");
    assert_eq!((status.code(), field_of(&status)), (Code::AlreadyExists, "email"));
}
on_both_backends!(username_and_email_are_unique_in_any_case);

async fn invalid_fields_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        ("username", {
            let mut r = registration("x");
            r.username = "ab".into();
            r
        }),
        ("username", {
            let mut r = registration("x");
            r.username = "has space".into();
            r
        }),
        ("email", {
            let mut r = registration("x");
            r.email = "not-an-email".into();
            r
        }),
        ("password", {
            let mut r = registration("x");
            r.password = "7chars!".into();
            r
        }),
        ("full_name", {
            let mut r = registration("x");
            r.full_name = Some("f".repeat(101));
            r
        }),
    ];
    for (field, request) in cases {
        let status = app.register(request).await.expect_err(field);
        assert_eq!((status.code(), field_of(&status)), (Code::InvalidArgument, field));
    }
}
on_both_backends!(invalid_fields_are_named);

async fn the_longest_values_fit(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut request = registration("x");
    request.username = format!("{}{}", "u".repeat(28), &request.username[request.username.len() - 4..]);
    request.password = "p".repeat(128);
    request.full_name = Some("é".repeat(100));
    let user = app.register(request.clone()).await.expect("registered");
    assert_eq!(user.full_name.as_deref().map(|n| n.chars().count()), Some(100));
    app.login(&request.username, &request.password).await.expect("logs in");
}
on_both_backends!(the_longest_values_fit);
