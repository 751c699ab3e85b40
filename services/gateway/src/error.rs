//! The gateway's error type: the one mapping to HTTP (status, `{"detail"}` body,
//! `WWW-Authenticate` on 401) and the one mapping from the services' gRPC status.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::Code;
use utoipa::ToSchema;

/// The error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for humans.
    pub detail: String,
    /// On 422 only: each invalid field and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field, e.g. `username` or `query.limit`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("too many requests")]
    RateLimited { retry_after_s: u64 },
    #[error("{0} is unavailable, try again shortly")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// 429, to retry after `wait` (whole seconds, at least 1).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Self::RateLimited { retry_after_s: crate::limits::retry_after_secs(wait) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a service's gRPC status; `service` names the dependency in a 503.
    pub fn from_status(status: tonic::Status, service: &'static str) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => {
                let field = status
                    .metadata()
                    .get(chat_proto::FIELD_METADATA_KEY)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("body")
                    .to_owned();
                let message = message.strip_prefix(&format!("{field}: ")).unwrap_or(&message).to_owned();
                Self::invalid(field, message)
            }
            Code::AlreadyExists => Self::Conflict(message),
            Code::Unauthenticated => Self::Unauthorized(message),
            Code::PermissionDenied => Self::Forbidden(message),
            Code::NotFound => Self::NotFound(message),
            Code::FailedPrecondition | Code::OutOfRange => Self::BadRequest(message),
            Code::ResourceExhausted => {
                let retry_after_s = status
                    .metadata()
                    .get(chat_proto::RETRY_AFTER_METADATA_KEY)
                    .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                Self::RateLimited { retry_after_s: retry_after_s.max(1) }
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                tracing::warn!(service, code = ?status.code(), %message, "dependency unavailable");
                Self::Unavailable(service)
            }
            // A transport failure before any answer arrives is reported as Unknown.
            Code::Unknown if std::error::Error::source(&status).is_some() => {
                tracing::warn!(service, %message, "dependency unreachable");
                Self::Unavailable(service)
            }
            _ => Self::Internal(anyhow::anyhow!("{service} answered {:?}: {message}", status.code())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let errors = match &self {
            Self::Validation(errors) => Some(errors.clone()),
            _ => None,
        };
        let detail = match &self {
            Self::Internal(source) => {
                tracing::error!(error = format!("{source:#}"), "internal error");
                "internal error".to_owned()
            }
            Self::Validation(errors) => {
                errors.iter().map(|error| format!("{}: {}", error.field, error.message)).collect::<Vec<_>>().join("; ")
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody { detail, errors })).into_response();
        match self {
            Self::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_s } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            Self::Unavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field_from_metadata() {
        let mut status = tonic::Status::invalid_argument("username: must be 3 to 32 characters");
        status.metadata_mut().insert("x-field", "username".parse().unwrap());
        let ApiError::Validation(errors) = ApiError::from_status(status, "auth") else { panic!("not a 422") };
        assert_eq!(errors, vec![FieldError::new("username", "must be 3 to 32 characters")]);
    }

    #[test]
    fn an_unreachable_service_is_503_not_500() {
        for status in [tonic::Status::unavailable("tcp connect error"), tonic::Status::deadline_exceeded("slow")] {
            let error = ApiError::from_status(status, "auth");
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
    }

    #[test]
    fn a_401_names_the_bearer_scheme() {
        let response = ApiError::Unauthorized("no token".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
