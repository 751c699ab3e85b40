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

/// Revocations are kept this much longer than a token lives (a login whose
/// hash was queued when the password changed issues a token a little later).
const KEEP_MS: i64 = 60_000;

/// Follows auth's token versions forever (abort the task to stop). Until
/// its first answer (auth down when the gateway starts) it knows of no
/// revocation; changes are stamped by auth's clock, so auth replicas' clocks
/// should agree within [`OVERLAP_MS`].
pub async fn follow(auth: AuthServiceClient<GrpcChannel>, versions: TokenVersions, token_lifetime: Duration) {
    let lifetime_ms = i64::try_from(token_lifetime.as_millis()).unwrap_or(i64::MAX);
    // Changes older than a token's lifetime revoke nothing that is still valid.
    let mut cursor = (event_bus::now_ms().saturating_sub(lifetime_ms), 0);
    loop {
        let request = ListTokenVersionsRequest { changed_since_ms: cursor.0, after_user_id: cursor.1 };
        match auth.clone().list_token_versions(request).await {
            Ok(response) => {
                let response = response.into_inner();
                for change in &response.versions {
                    versions.raise(change.user_id, change.version, change.changed_at_ms);
                }
                versions.forget_before(event_bus::now_ms().saturating_sub(lifetime_ms.saturating_add(KEEP_MS)));
                match response.versions.last() {
                    // A full page: the next one at once, from its last item (a cursor, never the same page twice).
                    Some(last) if response.versions.len() >= PAGE => {
                        cursor = (last.changed_at_ms, last.user_id);
                        continue;
                    }
                    _ => {
                        let again = response.now_ms.saturating_sub(OVERLAP_MS);
                        if again > cursor.0 {
                            cursor = (again, 0);
                        }
                    }
                }
            }
            Err(status) => tracing::debug!(code = ?status.code(), "cannot ask auth for token versions; will retry"),
        }
        tokio::time::sleep(POLL).await;
    }
}
