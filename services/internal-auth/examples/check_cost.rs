//! What admitting one internal call costs a server: the credential check
//! alone, and with a forwarded user token verified into an `Actor`.
//!
//!     cargo run --release -p internal-auth --example check_cost
//!
//! (A measurement for BENCHMARKS.md, not a test: it asserts nothing.)

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use access_token::{Algorithm, TokenIssuer, TokenSettings, TokenVerifier};
use internal_auth::{Authenticate, CREDENTIAL_HEADER, InternalCredential, USER_TOKEN_HEADER};
use tower::{Layer as _, Service as _};

const CALLS: u32 = 200_000;

fn main() {
    let settings = TokenSettings {
        secret: "a-signing-key-of-at-least-32-characters!".into(),
        algorithm: Algorithm::HS256,
        ttl: Duration::from_secs(1800),
    };
    let token = TokenIssuer::new(&settings).issue(42, "ada", 0).expect("a token");
    let credential = "an-internal-credential-of-32-characters-or-more";
    let inner = tower::service_fn(|_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) });
    let mut server =
        Authenticate::new(InternalCredential::parse(credential).expect("valid"), TokenVerifier::new(&settings))
            .layer(inner);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    for (what, with_token) in [("credential only", false), ("credential + user token", true)] {
        let started = Instant::now();
        for _ in 0..CALLS {
            let mut request = http::Request::builder()
                .uri("/chat.messages.v1.MessageStoreService/SendMessage")
                .header(CREDENTIAL_HEADER, credential);
            if with_token {
                request = request.header(USER_TOKEN_HEADER, &token);
            }
            let response = runtime.block_on(server.call(request.body(()).expect("a request"))).expect("infallible");
            assert!(response.headers().get("grpc-status").is_none(), "admitted");
        }
        let per_call = started.elapsed() / CALLS;
        println!("{what}: {per_call:?} per call ({CALLS} calls, request building included)");
    }
}
