//! Who may call the internal gRPC services, and on whose behalf.
//!
//! Two credentials travel in a call's metadata:
//!
//! - [`CREDENTIAL_HEADER`]: the deployment's internal credential
//!   (`INTERNAL_TOKEN`, the same in every service and gateway). Every server
//!   refuses a call without it, or with another, as `UNAUTHENTICATED`
//!   ([`Authenticate`]: one tower layer per server, compared in constant
//!   time). Health checks (`grpc.health.v1`) are exempt: probes cannot send
//!   it, and they learn nothing but "serving" or not.
//! - [`USER_TOKEN_HEADER`]: the access token of the user the call acts for,
//!   as the client presented it to the gateway. The receiving server verifies
//!   it (signature, expiry, claims) and puts the [`Actor`] in the request's
//!   extensions; a user-scoped RPC takes its acting user from there
//!   ([`actor`]) and nowhere else. Holding the internal credential is thus
//!   not enough to act as a user: that takes a token signed with
//!   `SECRET_KEY`.
//!
//! Calls made on nobody's behalf (a membership check by message-store, the
//! gateway's fan-out backfill) carry the internal credential only; each RPC
//! says whether it accepts them.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use access_token::TokenVerifier;
use env_config::ConfigError;
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tonic::{
    Status,
    metadata::{Ascii, MetadataMap, MetadataValue},
};

/// The metadata key of the internal credential.
pub const CREDENTIAL_HEADER: &str = "x-internal-credential";
/// The metadata key of the acting user's access token.
pub const USER_TOKEN_HEADER: &str = "x-user-token";
/// The variable that holds the internal credential.
pub const CREDENTIAL_VARIABLE: &str = "INTERNAL_TOKEN";
/// The shortest internal credential accepted, in bytes.
pub const MIN_CREDENTIAL_LEN: usize = 32;
/// Calls under this path need no credential.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The internal credential: a shared secret of at least [`MIN_CREDENTIAL_LEN`]
/// visible ASCII characters. Never printed.
#[derive(Clone)]
pub struct InternalCredential {
    value: MetadataValue<Ascii>,
}

impl std::fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalCredential([redacted])")
    }
}

impl InternalCredential {
    /// `INTERNAL_TOKEN`, which the distributed binaries require.
    pub fn from_env() -> Result<Self, ConfigError> {
        let value = env_config::string(CREDENTIAL_VARIABLE).ok_or_else(|| {
            ConfigError::missing(
                CREDENTIAL_VARIABLE,
                format_args!(
                    "the credential of internal gRPC calls, the same in every service (at least {MIN_CREDENTIAL_LEN} characters, e.g. `openssl rand -hex 32`)"
                ),
            )
        })?;
        Self::parse(&value)
    }

    /// A credential from its text.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::invalid(CREDENTIAL_VARIABLE, "[redacted]", reason);
        let value = value.trim();
        if value.len() < MIN_CREDENTIAL_LEN {
            return Err(invalid(&format!("must be at least {MIN_CREDENTIAL_LEN} characters")));
        }
        if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(invalid("must be visible ASCII characters (no spaces)"));
        }
        let mut value: MetadataValue<Ascii> = value.parse().map_err(|_| invalid("not a valid header value"))?;
        value.set_sensitive(true);
        Ok(Self { value })
    }

    /// A random credential, for a process whose services only call each other
    /// (the standalone server).
    pub fn generate() -> Self {
        let value: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(64).map(char::from).collect();
        Self::parse(&value).expect("64 alphanumerics are a valid credential")
    }

    /// Puts the credential into a call's metadata.
    pub fn attach(&self, metadata: &mut MetadataMap) {
        metadata.insert(CREDENTIAL_HEADER, self.value.clone());
    }

    fn matches(&self, presented: &[u8]) -> bool {
        self.value.as_bytes().ct_eq(presented).into()
    }
}

/// A user's access token as it travels to the services, verified by the
/// gateway that took it.
#[derive(Clone, Debug)]
pub struct UserToken(MetadataValue<Ascii>);

impl UserToken {
    /// `None` when the token cannot travel as metadata (it would not verify anyway).
    pub fn new(token: &str) -> Option<Self> {
        let mut value: MetadataValue<Ascii> = token.parse().ok()?;
        value.set_sensitive(true);
        Some(Self(value))
    }

    /// A call that acts for this token's user.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(USER_TOKEN_HEADER, self.0.clone());
        request
    }
}

/// The user a call acts for, from the verified token it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub username: String,
}

/// The acting user of a user-scoped call; `UNAUTHENTICATED` when the call
/// carried no user token.
pub fn actor<T>(request: &tonic::Request<T>) -> Result<Actor, Status> {
    acting_user(request).cloned().ok_or_else(|| {
        Status::unauthenticated(format!("this call acts for a user: send their access token in {USER_TOKEN_HEADER}"))
    })
}

/// The acting user's id and the request's message, for a user-scoped call.
pub fn acting<T>(request: tonic::Request<T>) -> Result<(i64, T), Status> {
    let caller = actor(&request)?.user_id;
    Ok((caller, request.into_inner()))
}

/// The acting user, when the call acts for one (`None`: a service's own call).
pub fn acting_user<T>(request: &tonic::Request<T>) -> Option<&Actor> {
    request.extensions().get::<Actor>()
}

/// The server side: a tower layer that refuses calls without the internal
/// credential and verifies the acting user's token.
#[derive(Clone)]
pub struct Authenticate {
    credential: InternalCredential,
    verifier: Arc<TokenVerifier>,
}

impl std::fmt::Debug for Authenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticate")
    }
}

impl Authenticate {
    pub fn new(credential: InternalCredential, verifier: TokenVerifier) -> Self {
        Self { credential, verifier: Arc::new(verifier) }
    }

    /// Lets the call through (with its [`Actor`] attached), or says why not.
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        if request.uri().path().starts_with(HEALTH_PREFIX) {
            return Ok(());
        }
        let presented = request.headers().get(CREDENTIAL_HEADER).map(http::HeaderValue::as_bytes);
        if !presented.is_some_and(|presented| self.credential.matches(presented)) {
            return Err(Status::unauthenticated(format!(
                "internal calls only: {CREDENTIAL_HEADER} is missing or wrong"
            )));
        }
        if let Some(token) = request.headers().get(USER_TOKEN_HEADER) {
            let verified = token
                .to_str()
                .ok()
                .map(|token| self.verifier.verify(token))
                .unwrap_or(Err(access_token::TokenError::Invalid))
                .map_err(|error| Status::unauthenticated(format!("{USER_TOKEN_HEADER}: {error}")))?;
            request.extensions_mut().insert(Actor { user_id: verified.user_id, username: verified.username });
        }
        Ok(())
    }
}

impl<S> tower::Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, auth: self.clone() }
    }
}

/// A service behind [`Authenticate`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    inner: S,
    auth: Authenticate,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.auth.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                tracing::warn!(path = %request.uri().path(), message = status.message(), "internal call refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use access_token::{TokenIssuer, TokenSettings};
    use secrecy::SecretString;
    use tower::{Layer as _, Service as _};

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const CREDENTIAL: &str = "internal-credential-0123456789-abcdef";

    fn settings() -> TokenSettings {
        TokenSettings {
            secret: SecretString::from(SECRET),
            algorithm: access_token::Algorithm::HS256,
            ttl: Duration::from_secs(60),
        }
    }

    /// A server that answers with the acting user it saw.
    fn server() -> Authenticated<
        impl tower::Service<http::Request<()>, Response = http::Response<String>, Error = Infallible, Future: Send> + Clone,
    > {
        let inner = tower::service_fn(|request: http::Request<()>| async move {
            let actor = request.extensions().get::<Actor>().map(|actor| actor.user_id.to_string());
            Ok::<_, Infallible>(http::Response::new(actor.unwrap_or_else(|| "service".into())))
        });
        let credential = InternalCredential::parse(CREDENTIAL).unwrap();
        Authenticate::new(credential, TokenVerifier::new(&settings())).layer(inner)
    }

    fn grpc_code(response: &http::Response<String>) -> Option<tonic::Code> {
        response.headers().get("grpc-status").map(|code| tonic::Code::from_bytes(code.as_bytes()))
    }

    async fn call(path: &str, headers: &[(&str, &str)]) -> http::Response<String> {
        let mut request = http::Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        server().call(request.body(()).unwrap()).await.unwrap()
    }

    /// Headers sent, and what the inner service answers (or the refusal).
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<&'a str, tonic::Code>);

    #[tokio::test]
    async fn who_gets_through() {
        let token = TokenIssuer::new(&settings()).issue(42, "ada", 0).unwrap();
        let forged = TokenIssuer::new(&TokenSettings {
            secret: SecretString::from("another-secret-another-secret-xx"),
            ..settings()
        })
        .issue(42, "ada", 0)
        .unwrap();
        let method = "/chat.messages.v1.MessageStoreService/SendMessage";
        let cases: [Case<'_>; 7] = [
            (&[], Err(tonic::Code::Unauthenticated)),
            (&[(CREDENTIAL_HEADER, "internal-credential-0123456789-abcdeX")], Err(tonic::Code::Unauthenticated)),
            (&[(CREDENTIAL_HEADER, "internal")], Err(tonic::Code::Unauthenticated)),
            (&[(USER_TOKEN_HEADER, &token)], Err(tonic::Code::Unauthenticated)),
            (&[(CREDENTIAL_HEADER, CREDENTIAL)], Ok("service")),
            (&[(CREDENTIAL_HEADER, CREDENTIAL), (USER_TOKEN_HEADER, &token)], Ok("42")),
            (&[(CREDENTIAL_HEADER, CREDENTIAL), (USER_TOKEN_HEADER, &forged)], Err(tonic::Code::Unauthenticated)),
        ];
        for (headers, expected) in cases {
            let response = call(method, headers).await;
            match expected {
                Ok(body) => assert_eq!((grpc_code(&response), response.body().as_str()), (None, body), "{headers:?}"),
                Err(code) => assert_eq!(grpc_code(&response), Some(code), "{headers:?}"),
            }
        }
    }

    #[tokio::test]
    async fn health_checks_need_no_credential() {
        let response = call("/grpc.health.v1.Health/Check", &[]).await;
        assert_eq!((grpc_code(&response), response.body().as_str()), (None, "service"));
    }

    #[test]
    fn short_or_spaced_credentials_are_refused() {
        for bad in ["short", "has a space in it and is long enough for the rest"] {
            let error = InternalCredential::parse(bad).unwrap_err().to_string();
            assert!(error.contains(CREDENTIAL_VARIABLE) && !error.contains(bad), "{error}");
        }
        assert!(InternalCredential::parse(CREDENTIAL).is_ok());
        assert!(!format!("{:?}", InternalCredential::generate()).contains(CREDENTIAL));
    }

    #[test]
    fn a_user_token_travels_in_its_own_header() {
        let request = UserToken::new("abc.def.ghi").unwrap().request(());
        assert_eq!(request.metadata().get(USER_TOKEN_HEADER).unwrap(), "abc.def.ghi");
        assert!(UserToken::new("bad\ntoken").is_none());
    }
}
