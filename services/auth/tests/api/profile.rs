//! Reading and changing a user's profile.

use chat_proto::auth as pb;
use sql_pool::Backend;
use tonic::Code;

use sql_pool::on_both_backends;

use crate::helpers::{TestApp, as_user, field_of, registration, spawn_app};

/// An update that acts for `user_id`.
async fn update(app: &TestApp, user_id: i64, request: pb::UpdateUserRequest) -> Result<pb::User, tonic::Status> {
    app.client.clone().update_user(as_user(user_id, request)).await.map(tonic::Response::into_inner)
}

async fn email_and_full_name_change_and_full_name_clears(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register(registration("ada")).await.expect("registered");
    let changed = update(
        &app,
        user.id,
        pb::UpdateUserRequest {
            email: Some("New.Address@Example.org".into()),
            full_name: Some("Ada L.".into()),
            ..Default::default()
        },
    )
    .await
    .expect("updated");
    assert_eq!((changed.email.as_str(), changed.full_name.as_deref()), ("new.address@example.org", Some("Ada L.")));

    let cleared = update(&app, user.id, pb::UpdateUserRequest { full_name: Some(String::new()), ..Default::default() })
        .await
        .expect("cleared");
    assert_eq!(cleared.full_name, None);
    assert_eq!(cleared.email, "new.address@example.org");
}
on_both_backends!(email_and_full_name_change_and_full_name_clears);

async fn a_taken_email_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.register(registration("ada")).await.expect("registered");
    let bob = app.register(registration("bob")).await.expect("registered");
    let status =
        update(&app, ada.id, pb::UpdateUserRequest { email: Some(bob.email.to_uppercase()), ..Default::default() })
            .await
            .expect_err("taken");
    assert_eq!((status.code(), field_of(&status)), (Code::AlreadyExists, "email"));
}
on_both_backends!(a_taken_email_is_refused);

async fn the_password_changes_only_with_the_current_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let request = registration("ada");
    let user = app.register(request.clone()).await.expect("registered");
    let change = |current: Option<&str>| pb::UpdateUserRequest {
        password: Some("a-brand-new-password".into()),
        current_password: current.map(Into::into),
        ..Default::default()
    };
    let missing = update(&app, user.id, change(None)).await.expect_err("needs the current password");
    assert_eq!((missing.code(), field_of(&missing)), (Code::InvalidArgument, "current_password"));
    let wrong = update(&app, user.id, change(Some("not-it-at-all"))).await.expect_err("wrong current password");
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert!(app.login(&request.username, &request.password).await.is_ok());

    update(&app, user.id, change(Some(&request.password))).await.expect("changed");
    assert!(app.login(&request.username, "a-brand-new-password").await.is_ok());
    assert_eq!(app.login(&request.username, &request.password).await.expect_err("old").code(), Code::Unauthenticated);
}
on_both_backends!(the_password_changes_only_with_the_current_one);

async fn users_are_found_by_id_alone_or_in_batches(backend: Backend) {
    let app = spawn_app(backend).await;
    let ada = app.register(registration("ada")).await.expect("registered");
    let bob = app.register(registration("bob")).await.expect("registered");
    let found = app.client.clone().get_user(pb::GetUserRequest { id: bob.id }).await.expect("found").into_inner();
    assert_eq!(found, bob);
    let missing = app.client.clone().get_user(pb::GetUserRequest { id: bob.id + 1000 }).await.expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);

    let batch = app
        .client
        .clone()
        .get_users(pb::GetUsersRequest { ids: vec![bob.id, 999_999, ada.id, bob.id] })
        .await
        .expect("batch")
        .into_inner()
        .users;
    assert_eq!(batch, vec![ada, bob]);
}
on_both_backends!(users_are_found_by_id_alone_or_in_batches);
