//! The OpenAPI 3 document served at `/openapi.json`.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as Document,
        path::Operation,
        security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement, SecurityScheme},
    },
};

use utoipa::openapi::{
    ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
    header::HeaderBuilder,
    schema::{ObjectBuilder, Type},
};

use crate::{error, models, routes};

/// Paths anyone may call without a token.
const PUBLIC_PATHS: &[&str] =
    &["/", "/health", "/ready", "/api/v1/info", "/api/v1/users/register", "/api/v1/users/login"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat service",
        description = "Real-time chat: users, 1:1 and group chats, messages, WebSocket delivery.\n\n\
            Authenticate with `POST /api/v1/users/login`, then send `Authorization: Bearer <access_token>`.\n\n\
            Errors are `{\"detail\": str}`, with `errors: [{field, message}]` on 422.",
    ),
    paths(
        routes::system::root,
        routes::system::health,
        routes::system::ready,
        routes::system::info,
        routes::users::register,
        routes::users::login,
        routes::users::me,
        routes::users::update_me,
        routes::users::search,
        routes::users::get_user,
        routes::chats::create,
        routes::chats::list,
        routes::chats::get,
        routes::chats::update,
        routes::chats::leave,
        routes::chats::participants,
        routes::chats::add_participants,
        routes::chats::remove_participant,
        routes::chats::set_admin,
        routes::reads::mark,
        routes::reads::positions,
        routes::reads::unread,
        routes::messages::send,
        routes::messages::history,
        routes::messages::edit,
        routes::messages::edits,
        routes::messages::delete,
        routes::messages::react,
        routes::messages::unreact,
        crate::ws::stats,
        crate::ws::online,
    ),
    components(schemas(
        error::ErrorBody,
        error::FieldError,
        models::UserPrivate,
        models::UserPublic,
        models::Token,
        models::Chat,
        models::Participant,
        models::Message,
        models::HistoryPage,
        models::MessageVersion,
        models::Reaction,
        models::ReadBody,
        models::ReadState,
        models::ReadPosition,
        models::UnreadTotals,
    )),
    modifiers(&Security, &CommonResponses),
    tags(
        (name = "system", description = "Service information and health"),
        (name = "users", description = "Registration, login, profiles, search"),
        (name = "chats", description = "Direct and group chats, participants, admins"),
        (name = "messages", description = "Sending, history, edits and their history, deletes, reactions"),
        (name = "websocket", description = "Live delivery: `GET /api/v1/ws?token=JWT[&after=CHAT:ID,…]` \
            (one WebSocket for every chat of the user) and `GET /api/v1/ws/{chat_id}?token=JWT[&after=ID]` \
            (one chat's), see the README; presence and connection stats"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token (and the OAuth2 password flow, for Swagger's
/// "Authorize") and requires it on every path that is not public.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new("/api/v1/users/login", Scopes::new()))])),
        );
        for (path, item) in &mut openapi.paths.paths {
            if PUBLIC_PATHS.contains(&path.as_str()) {
                continue;
            }
            let operations: [&mut Option<Operation>; 4] =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("oauth2", Vec::<String>::new()),
                ]);
            }
        }
    }
}

/// Adds the answers every operation of a kind can give, where a route does
/// not describe them itself: 401 on authenticated routes, 422 (and 413) where
/// there are parameters or a body, 404 where a path names something, 408,
/// and 503 with `Retry-After` wherever a service is called.
struct CommonResponses;

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
}

/// `Retry-After` in whole seconds.
fn with_retry_after(response: ResponseBuilder) -> Response {
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
    let header = HeaderBuilder::new().schema(seconds).description(Some("Seconds until a retry may succeed"));
    response.header("Retry-After", header.build()).build()
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/api/") {
                continue;
            }
            let public = PUBLIC_PATHS.contains(&path.as_str());
            let names_something = path.contains('{');
            let operations: [&mut Option<Operation>; 4] =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let has_input = operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) || names_something;
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut add = |code: &str, response: Response| {
                    responses.entry(code.to_owned()).or_insert(RefOr::T(response));
                };
                if !public {
                    add("401", error_response("Missing, invalid, expired or revoked token").build());
                }
                if has_input || has_body {
                    add("422", error_response("A parameter or a field is invalid (the field is named)").build());
                }
                if has_body {
                    add("413", error_response("The body is over 64 KiB").build());
                }
                if names_something {
                    add("404", error_response("No such chat, message or user").build());
                }
                add("408", error_response("Not answered within HTTP_REQUEST_TIMEOUT_SECONDS").build());
                add("503", with_retry_after(error_response("A service this needs is unavailable; retry")));
                if let Some(RefOr::T(limited)) = responses.get_mut("429") {
                    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
                    let header =
                        HeaderBuilder::new().schema(seconds).description(Some("Seconds until a retry may succeed"));
                    limited.headers.insert("Retry-After".to_owned(), header.build());
                }
            }
        }
    }
}
