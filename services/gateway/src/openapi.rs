//! The OpenAPI 3 document served at `/openapi.json`.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as Document,
        path::Operation,
        security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement, SecurityScheme},
    },
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
        routes::messages::send,
        routes::messages::history,
        routes::messages::edit,
        routes::messages::delete,
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
    )),
    modifiers(&Security),
    tags(
        (name = "system", description = "Service information and health"),
        (name = "users", description = "Registration, login, profiles, search"),
        (name = "chats", description = "Direct and group chats, participants, admins"),
        (name = "messages", description = "Sending, history, edits, deletes"),
        (name = "websocket", description = "Live delivery: `GET /api/v1/ws/{chat_id}?token=JWT[&after=ID]` \
            (WebSocket, see the README), presence and connection stats"),
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
