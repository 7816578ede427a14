//! A TCP proxy for cutting a client's broker connection on demand.
//!
//! ```ignore
//! let proxy = TcpProxy::start("127.0.0.1:5672").await;
//! let uri = proxy.uri(&vhost);          // amqp://guest:guest@127.0.0.1:<port>/<vhost>
//! // ... connect through it, then:
//! proxy.cut();                          // drops every connection now open
//! proxy.set_blocked(true);              // new connections are dropped at once
//! ```
//!
//! Cutting drops both sockets of every proxied connection: the broker sees
//! the client go away (and requeues its unacked deliveries) and the client
//! sees its connection end, as with a network failure.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use super::amqp::TestVhost;

/// A TCP proxy on `127.0.0.1:<random port>` to an upstream address.
#[derive(Debug)]
pub(crate) struct TcpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    connections: Mutex<Vec<AbortHandle>>,
    blocked: AtomicBool,
    accepted: AtomicUsize,
    /// While true, open connections carry no bytes (a silent network).
    frozen: Option<watch::Sender<bool>>,
}

impl TcpProxy {
    /// Listens on a free local port and forwards every connection to
    /// `upstream`.
    pub(crate) async fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (frozen, _) = watch::channel(false);
        let state = Arc::new(State {
            frozen: Some(frozen),
            ..State::default()
        });
        let upstream = upstream.to_owned();
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if state.blocked.load(Ordering::Acquire) {
                        drop(client);
                        continue;
                    }
                    state.accepted.fetch_add(1, Ordering::Relaxed);
                    let upstream = upstream.clone();
                    let frozen = state.frozen.as_ref().expect("frozen").subscribe();
                    let task = tokio::spawn(forward(client, upstream, frozen));
                    let mut connections = state.connections.lock();
                    connections.retain(|c| !c.is_finished());
                    connections.push(task.abort_handle());
                }
            }
        });
        TcpProxy {
            addr,
            state,
            accept,
        }
    }

    /// The proxy's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://guest:guest@<proxy>/<vhost>`.
    pub(crate) fn uri(&self, vhost: &TestVhost) -> String {
        format!("amqp://guest:guest@{}/{}", self.addr, vhost.name)
    }

    /// Drops every connection open now; returns how many there were.
    pub(crate) fn cut(&self) -> usize {
        let connections: Vec<_> = self.state.connections.lock().drain(..).collect();
        let open = connections.iter().filter(|c| !c.is_finished()).count();
        for connection in connections {
            connection.abort();
        }
        open
    }

    /// While blocked, new connections are accepted and dropped at once.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.state.blocked.store(blocked, Ordering::Release);
    }

    /// While frozen, open connections stay open but carry nothing either
    /// way (a network that silently drops packets).
    pub(crate) fn set_frozen(&self, frozen: bool) {
        if let Some(sender) = &self.state.frozen {
            sender.send_replace(frozen);
        }
    }

    /// How many connections have been forwarded so far.
    pub(crate) fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn forward(client: TcpStream, upstream: String, frozen: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pump(client_read, server_write, frozen.clone()) => {}
        () = pump(server_read, client_write, frozen) => {}
    }
}

/// Copies bytes from `from` to `to`, holding them while frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
