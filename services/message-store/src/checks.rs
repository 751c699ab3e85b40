//! Membership checks asked of chat-metadata — what every send, read, edit
//! and delete is decided on — batched: the checks waiting together go in one
//! `CheckMemberships` call (see [`crate::batch`]), so that a burst of sends
//! costs chat-metadata one query instead of one per send.
//!
//! Each answer is chat-metadata's as of the call, made after the request
//! arrived: a removal whose response came before a send started is seen by
//! that send's check, exactly as with a call of its own.

use chat_proto::metadata::{
    CheckMembershipRequest, CheckMembershipsRequest, Membership,
    chat_metadata_service_client::ChatMetadataServiceClient,
};
use grpc_channel::GrpcChannel;

use crate::{batch::Batcher, error::MessageError};

/// The most checks in one call (chat-metadata takes up to 1,024).
const MAX_BATCH: usize = 256;
/// Checks waiting at most (past it, callers wait).
const QUEUE: usize = 4096;
const METADATA: &str = "the chat-metadata service";

type Answer = Result<Membership, MessageError>;

/// Hands checks to the task that asks chat-metadata; cheap to clone.
#[derive(Clone)]
pub struct MembershipChecks {
    batches: Batcher<CheckMembershipRequest, Answer>,
}

impl MembershipChecks {
    pub fn spawn(metadata: ChatMetadataServiceClient<GrpcChannel>) -> Self {
        let batches = Batcher::spawn(MAX_BATCH, QUEUE, move |checks: Vec<CheckMembershipRequest>| {
            let mut metadata = metadata.clone();
            async move {
                let count = checks.len();
                let answered = match metadata.check_memberships(CheckMembershipsRequest { checks }).await {
                    Ok(response) => Some(response.into_inner().memberships),
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), message = status.message(), "CheckMemberships failed");
                        None
                    }
                };
                match answered {
                    Some(memberships) if memberships.len() == count => memberships.into_iter().map(Ok).collect(),
                    wrong => {
                        if let Some(memberships) = wrong {
                            let answered = memberships.len();
                            tracing::error!(asked = count, answered, "CheckMemberships answered wrongly");
                        }
                        (0..count).map(|_| Err(MessageError::Unavailable(METADATA.into()))).collect()
                    }
                }
            }
        });
        Self { batches }
    }

    /// The user's membership of the chat now.
    pub async fn check(&self, chat_id: i64, user_id: i64) -> Answer {
        self.batches
            .submit(CheckMembershipRequest { chat_id, user_id })
            .await
            .map_err(|_| MessageError::Unavailable(METADATA.into()))?
    }
}
