//! What the fanout hands a socket: frames serialized once for every socket,
//! queued on the socket's bounded queue, and the word to close.

use std::sync::{
    Arc,
    atomic::{AtomicU16, Ordering},
};

use tokio::sync::{Notify, mpsc};

use crate::{metrics::METRICS, ws::close::CloseCode};

/// A frame serialized once for every socket.
#[derive(Debug)]
pub enum Outbound {
    Frame(Box<str>),
    /// A `new_message` frame, with its chat and id, so that a socket drops what it already replayed.
    Message {
        chat_id: i64,
        id: i64,
        json: Box<str>,
    },
}

/// What a socket's queue carries: one pointer a slot (the queue's first block
/// of slots is allocated for every socket, idle or not).
pub type Queued = Arc<Outbound>;

/// The fanout's word to a socket that it must close, and with which code.
#[derive(Debug, Default)]
pub struct CloseSignal {
    /// 0 until the fanout closes the socket, then the [`CloseCode`]'s number.
    code: AtomicU16,
    notify: Notify,
}

impl CloseSignal {
    /// Tells the socket to close with `code` (a later code replaces an earlier one).
    pub fn close(&self, code: CloseCode) {
        self.code.store(code.code(), Ordering::Release);
        // One waiter at most (the socket); with none, the permit waits for it.
        self.notify.notify_one();
    }

    /// The code, once the fanout has closed the socket.
    pub fn code(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Waits until the fanout closes the socket; the code.
    pub async fn closed(&self) -> CloseCode {
        loop {
            if let Some(code) = self.code() {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// A socket of one chat (`GET /ws/{chat_id}`), or of all its user's chats (`GET /ws`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Chat,
    User,
}

/// The fanout's end of one socket: one pointer, however many rooms hold it.
#[derive(Debug, Clone)]
pub struct SocketHandle(Arc<Socket>);

impl std::ops::Deref for SocketHandle {
    type Target = Socket;

    fn deref(&self) -> &Socket {
        &self.0
    }
}

#[derive(Debug)]
pub struct Socket {
    pub id: u64,
    pub user_id: i64,
    pub kind: SocketKind,
    /// When it connected (ms since the epoch): what happened before is not news to it.
    pub connected_at_ms: i64,
    queue: mpsc::Sender<Queued>,
    close: Arc<CloseSignal>,
}

/// The socket's end: its queue and its close signal.
pub struct Registration {
    pub socket_id: u64,
    pub queue: mpsc::Receiver<Queued>,
    pub close: Arc<CloseSignal>,
}

impl SocketHandle {
    /// A socket with a queue of `capacity` frames, and the socket's end of it.
    pub fn new(id: u64, user_id: i64, kind: SocketKind, capacity: usize) -> (Self, Registration) {
        let (queue, receiver) = mpsc::channel(capacity);
        let close = Arc::new(CloseSignal::default());
        let connected_at_ms = event_bus::now_ms();
        let handle = Self(Arc::new(Socket { id, user_id, kind, connected_at_ms, queue, close: close.clone() }));
        (handle, Registration { socket_id: id, queue: receiver, close })
    }
}

impl Socket {
    /// Queues a frame; a full queue means a client that does not keep up: closed with 1013.
    pub fn offer(&self, outbound: &Queued) {
        if self.queue.try_send(outbound.clone()).is_ok() {
            METRICS.ws_frames_queued.inc();
        } else {
            METRICS.ws_slow_closes.inc();
            self.close.close(CloseCode::TryAgain);
        }
    }

    /// Queues a frame for this socket only (a pong, an error): never closes it.
    pub fn reply(&self, outbound: Outbound) {
        let _ = self.queue.try_send(Arc::new(outbound));
    }

    pub fn close(&self, code: CloseCode) {
        self.close.close(code);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_close_before_the_socket_waits_is_not_lost() {
        let signal = CloseSignal::default();
        assert_eq!(signal.code(), None);
        signal.close(CloseCode::TryAgain);
        assert_eq!(tokio::time::timeout(WAIT, signal.closed()).await, Ok(CloseCode::TryAgain));
    }

    #[tokio::test]
    async fn a_waiting_socket_hears_the_close() {
        let signal = Arc::new(CloseSignal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.closed().await }
        });
        tokio::task::yield_now().await;
        signal.close(CloseCode::Forbidden);
        assert_eq!(tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap(), CloseCode::Forbidden);
    }

    #[tokio::test]
    async fn a_full_queue_closes_its_socket_with_try_again() {
        let (handle, mut registration) = SocketHandle::new(1, 7, SocketKind::User, 2);
        let frame: Queued = Arc::new(Outbound::Frame("{}".into()));
        handle.offer(&frame);
        handle.offer(&frame);
        assert_eq!(registration.close.code(), None);
        handle.offer(&frame);
        assert_eq!(registration.close.code(), Some(CloseCode::TryAgain));
        assert!(registration.queue.try_recv().is_ok());
    }
}
