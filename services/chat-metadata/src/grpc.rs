//! The `ChatMetadataService` gRPC layer: checks who may do what, calls the
//! store, announces membership changes on the bus.

use chat_proto::{
    auth::{GetUsersRequest, auth_service_client::AuthServiceClient},
    metadata::{self as pb, chat_metadata_service_server::ChatMetadataService},
};
use grpc_channel::GrpcChannel;
use internal_auth::acting;
use tonic::{Request, Response, Status};

use crate::{
    domain::{Chat, ChatType, GroupName, MAX_GROUP_MEMBERS, Member, Participant, distinct_ids, touches},
    error::MetadataError,
    store::ChatStore,
};

type Result<T> = std::result::Result<T, MetadataError>;

#[derive(Clone)]
pub struct ChatMetadataGrpc {
    store: ChatStore,
    auth: AuthServiceClient<GrpcChannel>,
}

/// The most checks one `CheckMemberships` call may carry.
const MAX_CHECKS: usize = 1024;

fn now_ms() -> i64 {
    event_bus::now_ms()
}

impl From<Participant> for pb::Participant {
    fn from(participant: Participant) -> Self {
        Self {
            user_id: participant.user_id,
            username: participant.username,
            joined_at_ms: participant.joined_at_ms,
            is_admin: participant.is_admin,
        }
    }
}

impl From<Chat> for pb::Chat {
    fn from(chat: Chat) -> Self {
        Self {
            id: chat.id,
            name: chat.name,
            chat_type: match chat.chat_type {
                ChatType::Direct => pb::ChatType::Direct,
                ChatType::Group => pb::ChatType::Group,
            } as i32,
            created_at_ms: chat.created_at_ms,
            updated_at_ms: chat.updated_at_ms,
            is_active: chat.is_active,
            participants: chat.participants.into_iter().map(Into::into).collect(),
        }
    }
}

/// What a caller is to a chat, checked in the order: exists, participant.
struct Access {
    chat: Chat,
    caller: Participant,
}

impl Access {
    fn require_group(&self, what: &str) -> Result<()> {
        match self.chat.chat_type {
            ChatType::Group => Ok(()),
            ChatType::Direct => Err(MetadataError::Rule(format!("{what} is only possible in a group chat"))),
        }
    }

    fn require_admin(&self) -> Result<()> {
        if self.caller.is_admin {
            Ok(())
        } else {
            Err(MetadataError::Forbidden("only a chat admin may do this".into()))
        }
    }
}

impl ChatMetadataGrpc {
    pub fn new(store: ChatStore, auth: AuthServiceClient<GrpcChannel>) -> Self {
        Self { store, auth }
    }

    /// The chat, if `caller_id` is one of its participants.
    async fn access(&self, chat_id: i64, caller_id: i64) -> Result<Access> {
        let chat = self.store.chat(chat_id).await?.ok_or_else(crate::error::chat_not_found)?;
        let caller = chat
            .participants
            .iter()
            .find(|participant| participant.user_id == caller_id)
            .cloned()
            .ok_or_else(crate::error::not_a_participant)?;
        Ok(Access { chat, caller })
    }

    /// These users as known to auth; `NotFound` naming any that is not.
    async fn members(&self, ids: &[i64]) -> Result<Vec<Member>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let response = self.auth.clone().get_users(GetUsersRequest { ids: ids.to_vec() }).await.map_err(|status| {
            tracing::warn!(code = ?status.code(), message = status.message(), "auth lookup failed");
            match status.code() {
                tonic::Code::InvalidArgument => MetadataError::invalid("user_ids", status.message().to_owned()),
                _ => MetadataError::Unavailable("the auth service".into()),
            }
        })?;
        let users = response.into_inner().users;
        let unknown: Vec<String> =
            ids.iter().filter(|id| !users.iter().any(|user| user.id == **id)).map(ToString::to_string).collect();
        if !unknown.is_empty() {
            return Err(MetadataError::NotFound(format!("unknown user id(s): {}", unknown.join(", "))));
        }
        Ok(ids
            .iter()
            .filter_map(|id| users.iter().find(|user| user.id == *id))
            .map(|user| Member { user_id: user.id, username: user.username.clone() })
            .collect())
    }

    async fn create(&self, caller_id: i64, request: pb::CreateChatRequest) -> Result<pb::CreateChatResponse> {
        let ids = distinct_ids(&request.participant_ids);
        if ids.iter().any(|id| *id <= 0) {
            return Err(MetadataError::invalid("participant_ids", "user ids are positive integers"));
        }
        match pb::ChatType::try_from(request.chat_type) {
            Ok(pb::ChatType::Direct) => {
                let [other] = ids[..] else {
                    return Err(MetadataError::invalid(
                        "participant_ids",
                        "a direct chat has exactly one other participant",
                    ));
                };
                if other == caller_id {
                    return Err(MetadataError::Rule("a direct chat needs another user than yourself".into()));
                }
                let members = self.members(&[caller_id, other]).await?;
                let (chat, created, joined_user_ids) =
                    self.store.find_or_create_direct(&members[0], &members[1], now_ms()).await?;
                Ok(pb::CreateChatResponse { chat: Some(chat.into()), created, joined_user_ids })
            }
            Ok(pb::ChatType::Group) => {
                let name = GroupName::parse(request.name)?;
                let others: Vec<i64> = ids.into_iter().filter(|id| *id != caller_id).collect();
                if others.len() + 1 > MAX_GROUP_MEMBERS {
                    return Err(MetadataError::Rule(format!(
                        "a group has at most {MAX_GROUP_MEMBERS} members, its creator included"
                    )));
                }
                let mut members = self.members(&[&[caller_id][..], &others].concat()).await?;
                let creator = members.remove(0);
                let chat = self.store.create_group(&name, &creator, &members, now_ms()).await?;
                let joined_user_ids = chat.participants.iter().map(|participant| participant.user_id).collect();
                Ok(pb::CreateChatResponse { chat: Some(chat.into()), created: true, joined_user_ids })
            }
            _ => Err(MetadataError::invalid("chat_type", "must be \"direct\" or \"group\"")),
        }
    }

    /// Takes `user_id` out of the chat: leaving (any chat) or being removed
    /// (`from_group`: groups only, by an admin or by themself).
    async fn remove(&self, chat_id: i64, caller_id: i64, user_id: i64, from_group: bool) -> Result<()> {
        let access = self.access(chat_id, caller_id).await?;
        if from_group {
            access.require_group("removing a participant")?;
            if user_id != caller_id {
                access.require_admin()?;
            }
        }
        // Removing someone else takes an admin, checked again under the chat's lock.
        let admin = (from_group && user_id != caller_id).then_some(caller_id);
        if !self.store.remove(chat_id, user_id, admin, caller_id).await? {
            return Err(MetadataError::NotFound("that user is not a participant of this chat".into()));
        }
        Ok(())
    }
}

fn page(limit: u32, offset: u32) -> Result<(u32, u32)> {
    if !(1..=100).contains(&limit) {
        return Err(MetadataError::invalid("limit", "must be 1 to 100"));
    }
    Ok((limit, offset))
}

#[tonic::async_trait]
impl ChatMetadataService for ChatMetadataGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_chat(
        &self,
        request: Request<pb::CreateChatRequest>,
    ) -> std::result::Result<Response<pb::CreateChatResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        Ok(Response::new(self.create(caller_id, request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_chat(&self, request: Request<pb::GetChatRequest>) -> std::result::Result<Response<pb::Chat>, Status> {
        let (caller_id, request) = acting(request)?;
        let access = self.access(request.chat_id, caller_id).await?;
        Ok(Response::new(access.chat.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_chats(
        &self,
        request: Request<pb::ListChatsRequest>,
    ) -> std::result::Result<Response<pb::ListChatsResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        let (limit, offset) = page(request.limit, request.offset)?;
        let chats = self.store.list_for(caller_id, limit, offset).await?;
        Ok(Response::new(pb::ListChatsResponse { chats: chats.into_iter().map(Into::into).collect() }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_chat_ids(
        &self,
        request: Request<pb::ListChatIdsRequest>,
    ) -> std::result::Result<Response<pb::ListChatIdsResponse>, Status> {
        let (caller_id, _) = acting(request)?;
        let chat_ids = self.store.chat_ids_of(caller_id).await?;
        Ok(Response::new(pb::ListChatIdsResponse { chat_ids }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_chat(
        &self,
        request: Request<pb::UpdateChatRequest>,
    ) -> std::result::Result<Response<pb::Chat>, Status> {
        let (caller_id, request) = acting(request)?;
        let access = self.access(request.chat_id, caller_id).await?;
        let name = GroupName::parse(Some(request.name))?;
        access.require_group("renaming")?;
        access.require_admin()?;
        self.store.rename(request.chat_id, &name, caller_id).await?;
        let chat = self.store.chat(request.chat_id).await?.ok_or_else(crate::error::chat_not_found)?;
        Ok(Response::new(chat.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn leave_chat(
        &self,
        request: Request<pb::LeaveChatRequest>,
    ) -> std::result::Result<Response<pb::LeaveChatResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        self.remove(request.chat_id, caller_id, caller_id, false).await?;
        Ok(Response::new(pb::LeaveChatResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn add_participants(
        &self,
        request: Request<pb::AddParticipantsRequest>,
    ) -> std::result::Result<Response<pb::ParticipantList>, Status> {
        let (caller_id, request) = acting(request)?;
        let access = self.access(request.chat_id, caller_id).await?;
        access.require_group("adding participants")?;
        access.require_admin()?;
        let ids = distinct_ids(&request.user_ids);
        if ids.iter().any(|id| *id <= 0) {
            return Err(MetadataError::invalid("user_ids", "user ids are positive integers").into());
        }
        if ids.len() > MAX_GROUP_MEMBERS {
            return Err(MetadataError::Rule(format!("a group has at most {MAX_GROUP_MEMBERS} members")).into());
        }
        let members = self.members(&ids).await?;
        let joined_user_ids = self.store.add(request.chat_id, &members, now_ms(), caller_id).await?;
        let chat = self.store.chat(request.chat_id).await?.ok_or_else(crate::error::chat_not_found)?;
        let participants = chat.participants.into_iter().map(Into::into).collect();
        Ok(Response::new(pb::ParticipantList { participants, joined_user_ids }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_participant(
        &self,
        request: Request<pb::RemoveParticipantRequest>,
    ) -> std::result::Result<Response<pb::RemoveParticipantResponse>, Status> {
        let (caller_id, request) = acting(request)?;
        self.remove(request.chat_id, caller_id, request.user_id, true).await?;
        Ok(Response::new(pb::RemoveParticipantResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_admin(
        &self,
        request: Request<pb::SetAdminRequest>,
    ) -> std::result::Result<Response<pb::Participant>, Status> {
        let (caller_id, request) = acting(request)?;
        let access = self.access(request.chat_id, caller_id).await?;
        access.require_group("changing admins")?;
        access.require_admin()?;
        let participant = self.store.set_admin(request.chat_id, request.user_id, request.is_admin, caller_id).await?;
        Ok(Response::new(participant.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_participants(
        &self,
        request: Request<pb::ListParticipantsRequest>,
    ) -> std::result::Result<Response<pb::ParticipantList>, Status> {
        let (caller_id, request) = acting(request)?;
        let access = self.access(request.chat_id, caller_id).await?;
        Ok(Response::new(pb::ParticipantList {
            participants: access.chat.participants.into_iter().map(Into::into).collect(),
            joined_user_ids: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_membership(
        &self,
        request: Request<pb::CheckMembershipRequest>,
    ) -> std::result::Result<Response<pb::Membership>, Status> {
        let request = request.into_inner();
        let (chat_exists, participant) = self.store.membership(request.chat_id, request.user_id).await?;
        Ok(Response::new(pb::Membership {
            chat_exists,
            is_participant: participant.is_some(),
            is_admin: participant.is_some_and(|p| p.is_admin),
        }))
    }

    #[tracing::instrument(skip_all, fields(checks))]
    async fn check_memberships(
        &self,
        request: Request<pb::CheckMembershipsRequest>,
    ) -> std::result::Result<Response<pb::CheckMembershipsResponse>, Status> {
        let checks = request.into_inner().checks;
        tracing::Span::current().record("checks", checks.len());
        if checks.len() > MAX_CHECKS {
            return Err(MetadataError::invalid("checks", format!("at most {MAX_CHECKS} per call")).into());
        }
        let pairs: Vec<(i64, i64)> = checks.iter().map(|check| (check.chat_id, check.user_id)).collect();
        let found = self.store.memberships(&pairs).await?;
        let memberships = found
            .into_iter()
            .map(|found| pb::Membership {
                chat_exists: found.chat_exists,
                is_participant: found.participant.is_some(),
                is_admin: found.participant == Some(true),
            })
            .collect();
        Ok(Response::new(pb::CheckMembershipsResponse { memberships }))
    }

    #[tracing::instrument(skip_all)]
    async fn touch_chats(
        &self,
        request: Request<pb::TouchChatsRequest>,
    ) -> std::result::Result<Response<pb::TouchChatsResponse>, Status> {
        let touched = request.into_inner().touches;
        if touched.len() > MAX_CHECKS {
            return Err(MetadataError::invalid("touches", format!("at most {MAX_CHECKS} per call")).into());
        }
        let asked: Vec<(i64, i64)> = touched.iter().map(|touch| (touch.chat_id, touch.at_ms)).collect();
        self.store.touch(&touches(&asked)).await?;
        Ok(Response::new(pb::TouchChatsResponse {}))
    }
}
