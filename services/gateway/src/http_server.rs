//! The gateway's HTTP/1.1 server: hyper under the axum router, with what
//! `axum::serve` does not offer — a header-read timeout (a client that sends
//! half a request line is cut off), keep-alive connections that go quiet at
//! shutdown, and the peer's address for every request (`ConnectInfo`).

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt as _;

/// How long a client may take to send a request's headers
/// (`HTTP_HEADER_TIMEOUT_SECONDS`, default 10).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop` completes; then stops accepting,
/// asks every connection to finish its request in flight and close, and
/// returns once they all have. Upgraded connections (WebSockets) live on in
/// their own tasks; the hub closes them.
pub async fn serve(listener: TcpListener, router: Router, header_timeout: Duration, stop: impl Future<Output = ()>) {
    let (stopping, stopping_rx) = watch::channel(false);
    // Every connection task holds a receiver: when none is left, all are done.
    let (done, _) = watch::channel(());
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let (mut stopping, alive) = (stopping_rx.clone(), done.subscribe());
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result, peer),
                () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await, peer);
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(stopping_rx);
    done.closed().await;
}

fn log_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn server(header_timeout: Duration) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, router, header_timeout, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        (addr, stop, task)
    }

    #[tokio::test]
    async fn half_a_request_line_is_cut_off_after_the_header_timeout() {
        let (addr, _stop, _task) = server(Duration::from_millis(300)).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the server closed the connection");
    }

    #[tokio::test]
    async fn requests_see_the_peer_and_shutdown_waits_for_idle_connections_to_close() {
        let (addr, stop, task) = server(DEFAULT_HEADER_TIMEOUT).await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = client.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("127.0.0.1"), "{answer}");
        // A keep-alive connection is open and idle: shutdown closes it, then returns.
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("shutdown finished").unwrap();
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "the idle connection was closed");
    }
}
