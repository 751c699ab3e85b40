//! The `AuthService` gRPC layer: parses requests into domain types, calls the
//! store and the hasher, converts the results back.

use access_token::{TokenIssuer, TokenVerifier};
use chat_proto::auth::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use std::{net::IpAddr, sync::Arc, time::Instant};

use crate::{
    domain::{Email, FullName, NewUser, Password, SearchQuery, User, Username},
    error::AuthError,
    login_limits::{Account, LoginLimits},
    password::PasswordHasher,
    store::{UserStore, now_ms},
};

/// The most users one `GetUsers` call may ask for.
const MAX_BATCH: usize = 1000;

/// The gRPC implementation of the auth service.
#[derive(Clone)]
pub struct AuthGrpc {
    store: UserStore,
    login_limits: Arc<LoginLimits>,
    hasher: PasswordHasher,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
}

impl AuthGrpc {
    pub fn new(
        store: UserStore,
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        login_limits: LoginLimits,
    ) -> Self {
        Self { store, hasher, issuer, verifier, login_limits: Arc::new(login_limits) }
    }
}

impl From<User> for pb::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            is_active: user.is_active,
            created_at_ms: user.created_at_ms,
            last_seen_ms: user.last_seen_ms,
        }
    }
}

fn positive_id(field: &'static str, id: i64) -> Result<i64, AuthError> {
    if id > 0 { Ok(id) } else { Err(AuthError::invalid(field, "must be a positive id")) }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    #[tracing::instrument(skip_all)]
    async fn register(&self, request: Request<pb::RegisterRequest>) -> Result<Response<pb::User>, Status> {
        let request = request.into_inner();
        let new = NewUser {
            username: Username::parse(request.username)?,
            email: Email::parse(request.email)?,
            password: Password::parse("password", request.password)?,
            full_name: request.full_name.map(FullName::parse).transpose()?.flatten(),
        };
        let hash = self.hasher.hash(new.password.as_str()).await?;
        let user = self.store.insert(&new, &hash).await?;
        tracing::info!(user_id = user.id, "user registered");
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let request = request.into_inner();
        if request.username.is_empty() || request.username.len() > 254 || request.password.len() > 1024 {
            return Err(AuthError::BadCredentials.into());
        }
        let found = self.store.credentials(&request.username).await?;
        // Paid for before the password is checked: concurrent guesses cannot exceed the limit.
        let address = request.client_addr.parse::<IpAddr>().ok();
        let attempt = self
            .login_limits
            .attempt(
                found.as_ref().map_or(Account::Unknown(&request.username), |c| Account::Known(c.user.id)),
                address,
                Instant::now(),
            )
            .map_err(|retry_after| AuthError::TooManyAttempts { retry_after })?;
        let matched = self.hasher.verify(&request.password, found.as_ref().map(|c| c.password_hash.as_str())).await?;
        let Some(credentials) = found.filter(|c| matched && c.user.is_active) else {
            return Err(AuthError::BadCredentials.into());
        };
        self.login_limits.succeeded(attempt, Instant::now());
        let mut user = credentials.user;
        let now = now_ms();
        self.store.touch_last_seen(user.id, now).await?;
        user.last_seen_ms = Some(now);
        let access_token = self
            .issuer
            .issue(user.id, &user.username, credentials.token_version)
            .map_err(anyhow::Error::new)
            .map_err(AuthError::from)?;
        Ok(Response::new(pb::LoginResponse {
            access_token,
            token_type: "bearer".into(),
            expires_in: self.issuer.ttl_seconds(),
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let id = positive_id("id", request.into_inner().id).map_err(|_| AuthError::NotFound)?;
        let user = self.store.by_id(id).await?.ok_or(AuthError::NotFound)?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_users(&self, request: Request<pb::GetUsersRequest>) -> Result<Response<pb::GetUsersResponse>, Status> {
        let mut ids = request.into_inner().ids;
        if ids.len() > MAX_BATCH {
            return Err(AuthError::invalid("ids", format!("at most {MAX_BATCH} ids per call")).into());
        }
        ids.retain(|id| *id > 0);
        ids.sort_unstable();
        ids.dedup();
        let users = self.store.by_ids(&ids).await?;
        Ok(Response::new(pb::GetUsersResponse { users: users.into_iter().map(Into::into).collect() }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Result<Response<pb::User>, Status> {
        let id = internal_auth::actor(&request)?.user_id;
        let request = request.into_inner();
        let email = request.email.map(Email::parse).transpose()?;
        let full_name = request.full_name.map(FullName::parse).transpose()?.map(|name| name.map(FullName::into_inner));
        let new_password = request.password.map(|p| Password::parse("password", p)).transpose()?;
        let password_hash = match new_password {
            None => None,
            Some(new) => {
                let current = request
                    .current_password
                    .ok_or_else(|| AuthError::invalid("current_password", "is required to change the password"))?;
                let credentials = self.store.credentials_by_id(id).await?.ok_or(AuthError::NotFound)?;
                // Checking the current password is a login attempt: it pays like one.
                let attempt = self
                    .login_limits
                    .attempt(Account::Known(id), None, Instant::now())
                    .map_err(|retry_after| AuthError::TooManyAttempts { retry_after })?;
                if !self.hasher.verify(&current, Some(&credentials.password_hash)).await? {
                    return Err(AuthError::WrongCurrentPassword.into());
                }
                self.login_limits.succeeded(attempt, Instant::now());
                Some(self.hasher.hash(new.as_str()).await?)
            }
        };
        let user = self.store.update(id, email.as_ref(), full_name, password_hash.as_deref()).await?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn search_users(
        &self,
        request: Request<pb::SearchUsersRequest>,
    ) -> Result<Response<pb::SearchUsersResponse>, Status> {
        let caller = internal_auth::actor(&request)?.user_id;
        let request = request.into_inner();
        let query = SearchQuery::parse(request.query)?;
        if !(1..=100).contains(&request.limit) {
            return Err(AuthError::invalid("limit", "must be 1 to 100").into());
        }
        let users = self.store.search(&query, request.limit, request.offset, caller).await?;
        Ok(Response::new(pb::SearchUsersResponse { users: users.into_iter().map(Into::into).collect() }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_token_versions(
        &self,
        request: Request<pb::ListTokenVersionsRequest>,
    ) -> Result<Response<pb::ListTokenVersionsResponse>, Status> {
        let now = now_ms();
        let request = request.into_inner();
        let changes = self.store.token_versions_since(request.changed_since_ms, request.after_user_id, 1000).await?;
        let versions = changes
            .into_iter()
            .map(|change| pb::TokenVersion {
                user_id: change.user_id,
                version: change.version,
                changed_at_ms: change.changed_at_ms,
            })
            .collect();
        Ok(Response::new(pb::ListTokenVersionsResponse { versions, now_ms: now }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<pb::VerifyTokenResponse>, Status> {
        let token = self
            .verifier
            .verify(&request.into_inner().access_token)
            .map_err(|error| Status::unauthenticated(error.to_string()))?;
        Ok(Response::new(pb::VerifyTokenResponse { user_id: token.user_id, expires_at_s: token.expires_at }))
    }
}
