//! User search: matching, ranking, paging.

use chat_proto::auth as pb;
use sql_pool::Backend;
use tonic::Code;

use sql_pool::on_both_backends;

use crate::helpers::{TestApp, as_user, field_of, registration, spawn_app};

/// A user id nobody has.
const NOBODY: i64 = 999_999_999;

async fn add(app: &TestApp, username: &str, full_name: Option<&str>) -> pb::User {
    let mut request = registration("x");
    request.username = username.into();
    request.full_name = full_name.map(Into::into);
    app.register(request).await.expect("registered")
}

async fn search(app: &TestApp, query: &str, limit: u32, offset: u32, caller: i64) -> Vec<String> {
    // A caller that is no user excludes nobody.
    let caller = if caller == 0 { NOBODY } else { caller };
    let request = as_user(caller, pb::SearchUsersRequest { query: query.into(), limit, offset });
    let users = app.client.clone().search_users(request).await.expect("searched").into_inner().users;
    users.into_iter().map(|user| user.username).collect()
}

async fn prefix_matches_come_first_then_by_username_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = add(&app, "caller-tag", None).await;
    add(&app, "0x-z", Some("Tag Person")).await;
    add(&app, "tag-b", None).await;
    add(&app, "TAG-C", None).await;
    add(&app, "a-tag", None).await;
    add(&app, "B-tag", None).await;
    add(&app, "c-other", Some("Mr tag")).await;
    add(&app, "unrelated", Some("Nobody")).await;
    assert_eq!(
        search(&app, "TaG", 100, 0, caller.id).await,
        ["0x-z", "tag-b", "TAG-C", "a-tag", "B-tag", "c-other"],
        "prefix matches (by username or full name) first, then the rest, each by username in any case; never the caller"
    );
}
on_both_backends!(prefix_matches_come_first_then_by_username_in_any_case);

async fn pages_follow_limit_and_offset(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..5 {
        add(&app, &format!("page_{n}"), None).await;
    }
    let everyone = search(&app, "page", 100, 0, 0).await;
    assert_eq!(everyone.len(), 5);
    let mut pages = Vec::new();
    for offset in [0, 2, 4] {
        pages.extend(search(&app, "page", 2, offset, 0).await);
    }
    assert_eq!(pages, everyone);
}
on_both_backends!(pages_follow_limit_and_offset);

async fn like_wildcards_are_plain_characters(backend: Backend) {
    let app = spawn_app(backend).await;
    add(&app, "under_score", None).await;
    add(&app, "underXscore", None).await;
    assert_eq!(search(&app, "r_s", 10, 0, 0).await, ["under_score"]);
    assert!(search(&app, "%", 10, 0, 0).await.is_empty());
}
on_both_backends!(like_wildcards_are_plain_characters);

async fn queries_and_limits_out_of_range_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, limit, field) in
        [("", 10, "q"), (&*"q".repeat(65), 10, "q"), ("abc", 0, "limit"), ("abc", 101, "limit")]
    {
        let request = as_user(NOBODY, pb::SearchUsersRequest { query: query.into(), limit, offset: 0 });
        let status = app.client.clone().search_users(request).await.expect_err("refused");
        assert_eq!((status.code(), field_of(&status)), (Code::InvalidArgument, field));
    }
}
on_both_backends!(queries_and_limits_out_of_range_are_refused);
