//! The internal gRPC services trust nobody who merely reaches their port:
//! every call needs the internal credential, and a call acting for a user
//! needs that user's own token.

use chat_proto::{
    auth::{self as auth_pb, auth_service_client::AuthServiceClient},
    messages::{self as messages_pb, message_store_service_client::MessageStoreServiceClient},
    metadata::{self as metadata_pb, chat_metadata_service_client::ChatMetadataServiceClient},
};
use chat_tests::{TestDeployment, as_user, spawn_deployment};
use grpc_channel::{GrpcChannel, InternalCredential, Security};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A channel with no credential at all: what an attacker on the network has.
async fn bare(url: &url::Url) -> Channel {
    Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap()
}

/// A channel with a credential that is not the deployment's.
fn wrong_credential(url: &url::Url) -> GrpcChannel {
    let security = Security {
        credential: InternalCredential::parse("someone-elses-credential-0123456789abcdef").unwrap(),
        tls: None,
    };
    grpc_channel::lazy(url, &security).unwrap()
}

fn assert_unauthenticated<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}"),
        Ok(answer) => panic!("{what} was answered: {answer:?}"),
    }
}

/// A user with a group chat, made through the gateway: (user id, their token, chat id).
async fn victim(app: &TestDeployment) -> (i64, i64) {
    let user = app.user("victim").await;
    let body = serde_json::json!({"chat_type": "group", "name": "private", "participant_ids": []});
    let response = app.http.post(app.url("/api/v1/chats/")).bearer_auth(&user.token).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let chat: serde_json::Value = response.json().await.unwrap();
    (user.id, chat["id"].as_i64().unwrap())
}

#[tokio::test]
async fn every_service_refuses_calls_without_the_internal_credential() {
    let app = spawn_deployment().await;
    let (user_id, chat_id) = victim(&app).await;
    let services = &app.services;

    // What the security review did with a raw HTTP/2 client: read a user's
    // email, change it, send a message as them, add members to their group.
    let read = auth_pb::GetUserRequest { id: user_id };
    let change = || auth_pb::UpdateUserRequest { email: Some("attacker@example.com".into()), ..Default::default() };
    let send =
        || messages_pb::SendMessageRequest { chat_id, content: "spoofed".into(), client_msg_id: None, reply_to: None };
    let add = || metadata_pb::AddParticipantsRequest { chat_id, user_ids: vec![user_id] };
    let history = || messages_pb::GetHistoryRequest { chat_id, limit: 10, cursor: None };

    let mut auth = AuthServiceClient::new(bare(&services.auth).await);
    assert_unauthenticated(auth.get_user(read).await, "auth GetUser without a credential");
    assert_unauthenticated(auth.update_user(as_user(user_id, change())).await, "auth UpdateUser with only a token");
    let login = auth_pb::LoginRequest { username: "x".into(), password: "y".into(), client_addr: String::new() };
    assert_unauthenticated(auth.login(login).await, "auth Login without a credential");
    let mut metadata = ChatMetadataServiceClient::new(bare(&services.metadata).await);
    assert_unauthenticated(metadata.add_participants(as_user(user_id, add())).await, "chat-metadata AddParticipants");
    let check = metadata_pb::CheckMembershipRequest { chat_id, user_id };
    assert_unauthenticated(metadata.check_membership(check).await, "chat-metadata CheckMembership");
    let mut messages = MessageStoreServiceClient::new(bare(&services.messages).await);
    assert_unauthenticated(messages.send_message(as_user(user_id, send())).await, "message-store SendMessage");
    assert_unauthenticated(messages.get_history(history()).await, "message-store GetHistory");

    // Another credential is as good as none.
    let mut auth = AuthServiceClient::new(wrong_credential(&services.auth));
    assert_unauthenticated(auth.get_user(auth_pb::GetUserRequest { id: user_id }).await, "auth, wrong credential");
    let mut metadata = ChatMetadataServiceClient::new(wrong_credential(&services.metadata));
    assert_unauthenticated(metadata.add_participants(as_user(user_id, add())).await, "chat-metadata, wrong credential");
    let mut messages = MessageStoreServiceClient::new(wrong_credential(&services.messages));
    assert_unauthenticated(messages.get_history(history()).await, "message-store, wrong credential");

    // Nothing changed.
    let page = app.messages().await.get_history(as_user(user_id, history())).await.unwrap().into_inner();
    assert!(page.messages.is_empty(), "no message was stored: {page:?}");
    let user = app.auth().await.get_user(auth_pb::GetUserRequest { id: user_id }).await.unwrap().into_inner();
    assert_ne!(user.email, "attacker@example.com");

    // Health checks stay open to probes, and say no more than "serving".
    for url in [&services.auth, &services.metadata, &services.messages] {
        let health = HealthClient::new(bare(url).await).check(HealthCheckRequest { service: String::new() }).await;
        assert!(health.is_ok(), "{url}: {health:?}");
    }
}

#[tokio::test]
async fn a_call_acting_for_a_user_needs_that_users_own_valid_token() {
    let app = spawn_deployment().await;
    let (user_id, chat_id) = victim(&app).await;
    let send =
        || messages_pb::SendMessageRequest { chat_id, content: "as whom?".into(), client_msg_id: None, reply_to: None };
    let mut messages = app.messages().await;
    let mut metadata = app.metadata().await;
    let mut auth = app.auth().await;

    // The internal credential alone does not make anyone a user.
    assert_unauthenticated(messages.send_message(send()).await, "a send with no user token");
    let list = || metadata_pb::ListChatsRequest { limit: 10, offset: 0 };
    assert_unauthenticated(metadata.list_chats(list()).await, "a chat list with no user token");
    let update = auth_pb::UpdateUserRequest { full_name: Some("Mallory".into()), ..Default::default() };
    assert_unauthenticated(auth.update_user(update).await, "a profile change with no user token");

    // A token signed with another key, or not a token at all.
    let forged = {
        let settings = access_token::TokenSettings {
            secret: "not-the-deployments-signing-key-0123456789".into(),
            algorithm: access_token::Algorithm::HS256,
            ttl: std::time::Duration::from_secs(60),
        };
        access_token::TokenIssuer::new(&settings).issue(user_id, "victim", 0).unwrap()
    };
    for token in [forged.as_str(), "not-a-token"] {
        let request = internal_auth::UserToken::new(token).unwrap().request(send());
        assert_unauthenticated(messages.send_message(request).await, "a send with a bad token");
    }

    // The user's own token: the sender is the token's user, whoever asks.
    let stored = messages.send_message(as_user(user_id, send())).await.unwrap().into_inner().message.unwrap();
    assert_eq!(stored.sender_id, user_id);
    let chats = metadata.list_chats(as_user(user_id, list())).await.unwrap().into_inner().chats;
    assert_eq!(chats.iter().map(|chat| chat.id).collect::<Vec<_>>(), [chat_id]);
}

#[tokio::test]
async fn a_bus_with_credentials_hears_only_clients_that_have_them() {
    use event_bus::{Bus as _, NatsBus, NatsCredentials};
    use futures::StreamExt as _;
    let nats = chat_tests::NatsProcess::start_with(&["--user", "chat", "--pass", "bus-password-123"]);
    let credentials = NatsCredentials::UserPassword { user: "chat".into(), password: "bus-password-123".into() };
    let member = NatsBus::connect_with(&nats.url(), "member", &credentials).await.unwrap();
    let mut heard = member.subscribe("chat.injected".into()).await.unwrap();
    member.flush().await.unwrap();

    // Without the password (or with another) a client never gets in, so it cannot inject events.
    let wrong = NatsCredentials::UserPassword { user: "chat".into(), password: "guess".into() };
    for (name, credentials) in [("anonymous", NatsCredentials::None), ("guesser", wrong)] {
        let outsider = NatsBus::connect_with(&nats.url(), name, &credentials).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!outsider.is_connected(), "{name} got in");
        let _ = outsider.publish("chat.injected".into(), "forged".into()).await;
    }
    member.publish("chat.injected".into(), "genuine".into()).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), heard.next()).await.unwrap().unwrap();
    assert_eq!(&first[..], b"genuine", "only the credentialed client's event arrives");
}

/// A CA, and a certificate it signed for `localhost` / 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String, rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem(), ca)
}

#[tokio::test]
async fn grpc_over_mutual_tls_serves_only_clients_with_a_certificate_of_the_ca() {
    use grpc_channel::Tls;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let (ca, cert, key, _) = certificates();
    let tls = Tls { identity: Identity::from_pem(&cert, &key), ca: Some(Certificate::from_pem(&ca)) };
    let security = Security { tls: Some(tls), ..chat_tests::security() };

    let db = sql_pool::testing::TestDatabase::new(sql_pool::Backend::Sqlite, "tls");
    let mut settings =
        auth::Settings::from_env_with(db.url.clone(), chat_tests::SECRET.into(), security.clone()).unwrap();
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    let service = auth::Application::build(settings).await.unwrap();
    let port = service.local_addr().port();
    let (stop, _) = tokio::sync::watch::channel(false);
    tokio::spawn(service.run_until_stopped(chat_tests::until(&stop)));
    let register = |name: &str| auth_pb::RegisterRequest {
        username: name.into(),
        email: format!("{name}@example.com"),
        password: "password-123".into(),
        full_name: None,
    };

    // A service of the deployment: its certificate, the CA, the credential.
    let url: url::Url = format!("https://localhost:{port}").parse().unwrap();
    let mut client = AuthServiceClient::new(grpc_channel::lazy(&url, &security).unwrap());
    assert!(client.register(register("tls_ok")).await.is_ok(), "a client with the CA's certificate is served");

    // Plain HTTP/2 to a TLS port, TLS without a client certificate, a certificate of another CA: all refused.
    let plain = format!("http://127.0.0.1:{port}").parse().unwrap();
    let mut plain = AuthServiceClient::new(grpc_channel::lazy(&plain, &chat_tests::security()).unwrap());
    assert!(plain.register(register("tls_plain")).await.is_err(), "plain text is refused");
    let anonymous = ClientTlsConfig::new().domain_name("localhost").ca_certificate(Certificate::from_pem(&ca));
    let channel = Endpoint::from_shared(url.to_string()).unwrap().tls_config(anonymous).unwrap().connect_lazy();
    let mut anonymous = AuthServiceClient::new(channel);
    assert!(anonymous.register(register("tls_anon")).await.is_err(), "a client without a certificate is refused");
    let (_, rogue_cert, rogue_key, _) = certificates();
    let rogue = Security {
        tls: Some(Tls { identity: Identity::from_pem(&rogue_cert, &rogue_key), ca: Some(Certificate::from_pem(&ca)) }),
        ..chat_tests::security()
    };
    let mut rogue = AuthServiceClient::new(grpc_channel::lazy(&url, &rogue).unwrap());
    assert!(rogue.register(register("tls_rogue")).await.is_err(), "a certificate of another CA is refused");
    let _ = stop.send(true);
}
