//! Keeps this replica's token versions current, so that a password change
//! revokes the user's earlier tokens everywhere: every [`POLL`] the gateway
//! asks auth which users' versions moved since it last asked (one indexed
//! query), and the replica that made a change applies it at once.

use std::time::Duration;

use access_token::TokenVersions;
use chat_proto::auth::{ListTokenVersionsRequest, auth_service_client::AuthServiceClient};
use grpc_channel::GrpcChannel;

/// How often auth is asked; a change made through another replica takes effect here within this.
pub const POLL: Duration = Duration::from_secs(2);
/// Changes committed while auth answered may carry a slightly earlier time: ask again from a little before.
const OVERLAP_MS: i64 = 5_000;
/// A full page: ask again at once, from its last change.
const PAGE: usize = 1000;

/// Follows auth's token versions forever (abort the task to stop).
pub async fn follow(auth: AuthServiceClient<GrpcChannel>, versions: TokenVersions, token_lifetime: Duration) {
    let lifetime_ms = i64::try_from(token_lifetime.as_millis()).unwrap_or(i64::MAX);
    // Changes older than a token's lifetime revoke nothing that is still valid.
    let mut since = event_bus::now_ms().saturating_sub(lifetime_ms);
    loop {
        let request = ListTokenVersionsRequest { changed_since_ms: since };
        match auth.clone().list_token_versions(request).await {
            Ok(response) => {
                let response = response.into_inner();
                for change in &response.versions {
                    versions.raise(change.user_id, change.version, change.changed_at_ms);
                }
                since = match response.versions.last() {
                    Some(last) if response.versions.len() >= PAGE => last.changed_at_ms,
                    _ => response.now_ms.saturating_sub(OVERLAP_MS).max(since),
                };
                versions.forget_before(event_bus::now_ms().saturating_sub(lifetime_ms + OVERLAP_MS));
                if response.versions.len() >= PAGE {
                    continue;
                }
            }
            Err(status) => tracing::debug!(code = ?status.code(), "cannot ask auth for token versions; will retry"),
        }
        tokio::time::sleep(POLL).await;
    }
}
