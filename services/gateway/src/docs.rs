//! The API docs pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), with every
//! asset served by the gateway itself so they render with no internet access.

use std::sync::{Arc, LazyLock};

use axum::{
    Json, Router,
    extract::Path,
    http::header,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use utoipa::OpenApi;
use utoipa_swagger_ui::Config;

use crate::{error::ApiError, openapi::ApiDoc};

const SPEC_URL: &str = "/openapi.json";

static SPEC: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null));

static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> =
    LazyLock::new(|| Arc::new(Config::new([SPEC_URL]).persist_authorization(true).display_request_duration(true)));

/// ReDoc's page, with its bundle inline (from the `aide` crate's vendored copy).
static REDOC_PAGE: LazyLock<String> =
    LazyLock::new(|| aide::redoc::Redoc::new(SPEC_URL).with_title("Chat service API").html());

/// The docs routes: `/openapi.json`, `/docs`, `/docs/{file}`, `/redoc`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(SPEC_URL, get(|| async { Json(SPEC.clone()) }))
        .route("/docs", get(|| swagger_file("index.html".into())))
        .route("/docs/", get(|| swagger_file("index.html".into())))
        .route("/docs/{*file}", get(|Path(file): Path<String>| swagger_file(file)))
        .route("/redoc", get(|| async { Html(REDOC_PAGE.as_str()) }))
}

async fn swagger_file(file: String) -> Response {
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(found)) => {
            let mut bytes = found.bytes.into_owned();
            if file == "index.html" {
                // Served at /docs (no trailing slash) too, so make relative asset URLs absolute.
                let page = String::from_utf8_lossy(&bytes)
                    .replace("=\"./", "=\"/docs/")
                    .replace("href=\"index.css\"", "href=\"/docs/index.css\"");
                bytes = page.into_bytes();
            }
            ([(header::CONTENT_TYPE, found.content_type)], bytes).into_response()
        }
        Ok(None) => ApiError::NotFound("no such docs file".into()).into_response(),
        Err(error) => {
            ApiError::Internal(anyhow::anyhow!("cannot serve Swagger UI file {file}: {error}")).into_response()
        }
    }
}
