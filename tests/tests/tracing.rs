//! OpenTelemetry: one request's spans, from a client's `traceparent` through
//! the gateway and over gRPC into auth, reach an OTLP collector as one trace.
//! (Its own test binary: it installs the process's global subscriber.)

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::{sync::Arc, time::Duration};

use chat_tests::ws::ChatSocket;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tokio::sync::Mutex;

/// What the collector keeps of a span.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    parent_span_id: String,
    name: String,
}

/// An OTLP/gRPC collector on port 0 that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().await;
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let (trace_id, parent_span_id) = (hex(&span.trace_id), hex(&span.parent_span_id));
                    spans.push(Received { trace_id, parent_span_id, name: span.name });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_continues_through_the_gateway_into_auth() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let telemetry = telemetry::init_with("chat-tests", Some(endpoint.parse().unwrap())).unwrap();

    let app = chat_tests::spawn_deployment().await;
    let user = app.user("traced").await;
    let (trace_id, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = app
        .http
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(&user.token)
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // A message's delivery over NATS belongs to the trace of the send that caused it.
    let other = app.user("receiver").await;
    let chat_id = app.direct_chat(&app.base_url, &user, &other).await;
    let mut socket = ChatSocket::connect_ready(&app.base_url, chat_id, &other.token, None).await.unwrap();
    let (send_trace, send_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let sent = app
        .http
        .post(app.url("/api/v1/messages/"))
        .bearer_auth(&user.token)
        .header("traceparent", format!("00-{send_trace}-{send_span}-01"))
        .json(&serde_json::json!({"chat_id": chat_id, "content": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    socket.expect("new_message", Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(telemetry); // flushes

    let spans = collector.spans.lock().await.clone();
    let ours: Vec<&Received> = spans.iter().filter(|span| span.trace_id == trace_id).collect();
    let http = ours.iter().find(|span| span.name == "http").expect("the gateway's request span is in the trace");
    assert_eq!(http.parent_span_id, client_span, "the gateway's span is the client span's child");
    assert!(
        ours.iter().any(|span| span.name == "grpc" && !span.parent_span_id.is_empty()),
        "auth's gRPC span is in the same trace, under the gateway's call: {:?}",
        ours.iter().map(|span| &span.name).collect::<Vec<_>>()
    );
    let send: Vec<&String> = spans.iter().filter(|span| span.trace_id == send_trace).map(|span| &span.name).collect();
    assert!(send.iter().any(|name| *name == "deliver"), "the gateway's delivery joins the send's trace: {send:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
