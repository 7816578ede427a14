//! The connection supervisor: owns the current lapin [`Connection`] (plain,
//! without lapin's own recovery), notices its loss and reconnects with
//! backoff, replaying the recorded topology before it hands the new
//! connection out. See the [module docs](super) for what callers see.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ConnectionStatus, Event};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

use super::endpoints::Endpoints;
use super::failure::{connect_reason, is_soft_error};
use super::options::AmqpOptions;
use super::topology::{declare_exchange_on, declare_queue_on};
use crate::error::{Error, Result};
use crate::transport::{ExchangeSpec, QueueSpec};

/// First delay before a reconnection attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the supervisor looks at the connection status, on top of
/// lapin's error events.
const POLL: Duration = Duration::from_millis(250);
/// The longest a reconnection attempt (TCP, handshake) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest one try of the first connection (TCP, handshake) may take;
/// kombu's `connect_timeout` is 4 s.
const FIRST_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the topology replay on a new connection may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `close()` waits for the broker's close-ok.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a close waits for consumers and deliveries to settle.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a publish waits for a reconnection in progress.
pub(super) const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// The message of [`Error::ConnectionLost`] for calls made while the
/// supervisor reconnects.
pub(super) const DOWN: &str = "connection to the broker is down; reconnecting";
/// The same without `auto_recover`: the loss is final.
pub(super) const LOST: &str = "connection to the broker was lost (auto_recover is off)";

/// The declarations this transport made, replayed after a reconnection.
#[derive(Debug, Default)]
pub(super) struct Topology {
    pub(super) exchanges: HashMap<String, ExchangeSpec>,
    pub(super) queues: HashMap<String, QueueSpec>,
    /// (queue, exchange, pattern)
    pub(super) bindings: Vec<(String, String, String)>,
}

/// One established connection.
pub(super) struct Live {
    pub(super) conn: Connection,
    /// 1 for the first connection, +1 for each reconnection.
    pub(super) generation: u64,
}

impl Live {
    pub(super) fn connected(&self) -> bool {
        self.conn.status().connected()
    }
}

/// The state of the broker link, as the supervisor publishes it.
#[derive(Clone)]
pub(super) enum Link {
    /// Connected, topology replayed: channels may be opened on it.
    Up(Arc<Live>),
    /// Lost; reconnecting (or lost for good without `auto_recover`).
    Down,
    /// [`Transport::close`](crate::transport::Transport::close) was called.
    Closed,
}

pub(super) type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// What the transport, its consumers and the supervisor share.
pub(super) struct Shared {
    /// The broker addresses, and which one is in use.
    pub(super) endpoints: Endpoints,
    pub(super) options: AmqpOptions,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) closed: AtomicBool,
    pub(super) link: watch::Sender<Link>,
    /// Wakes the supervisor: on close, or when a call saw the connection
    /// fail.
    pub(super) wake: Notify,
    pub(super) topology: Mutex<Topology>,
    /// The work of consumers and deliveries let go of (a cancel and the
    /// return of what a consumer had buffered, a reject of a delivery
    /// dropped unsettled): the connection is closed only after it is done,
    /// so none of it meets a connection being closed (lapin then drops the
    /// socket, and the broker, cut off, requeues deliveries whose acks it
    /// had not read yet: requests run twice).
    pub(super) settling: TaskTracker,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("uri", &self.endpoints.shown())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn new(
        endpoints: Endpoints,
        options: AmqpOptions,
        runtime: tokio::runtime::Handle,
        live: Arc<Live>,
    ) -> Shared {
        let (link, _) = watch::channel(Link::Up(live));
        Shared {
            endpoints,
            options,
            runtime,
            closed: AtomicBool::new(false),
            link,
            wake: Notify::new(),
            topology: Mutex::new(Topology::default()),
            settling: TaskTracker::new(),
        }
    }

    /// Runs `task` on the transport's runtime; a close waits for it (up to
    /// [`SETTLE_TIMEOUT`]) before closing the connection.
    pub(super) fn spawn_settling(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.settling.spawn_on(task, &self.runtime);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The error for a call made while the link is down.
    pub(super) fn down_error(&self) -> Error {
        if self.is_closed() {
            Error::TransportClosed
        } else if self.options.auto_recover {
            Error::ConnectionLost(DOWN.into())
        } else {
            Error::ConnectionLost(LOST.into())
        }
    }

    /// The current connection, or fails fast with [`Error::ConnectionLost`]
    /// (or [`Error::TransportClosed`]).
    pub(super) fn live(&self) -> Result<Arc<Live>> {
        match &*self.link.borrow() {
            Link::Up(live) if live.connected() => Ok(live.clone()),
            Link::Up(_) => {
                self.wake.notify_one();
                Err(self.down_error())
            }
            Link::Down => Err(self.down_error()),
            Link::Closed => Err(Error::TransportClosed),
        }
    }

    /// The current connection, waiting up to `wait` for a reconnection in
    /// progress.
    pub(super) async fn live_within(&self, wait: Duration) -> Result<Arc<Live>> {
        match self.live() {
            Err(Error::ConnectionLost(_)) if self.options.auto_recover => {}
            other => return other,
        }
        let mut rx = self.link.subscribe();
        let ready = rx.wait_for(|link| match link {
            Link::Up(live) => live.connected(),
            Link::Down => false,
            Link::Closed => true,
        });
        let _ = tokio::time::timeout(wait, ready).await;
        self.live()
    }

    /// Tells the supervisor a call saw the connection fail.
    pub(super) fn suspect(&self) {
        self.wake.notify_one();
    }

    /// Publishes a new link state, unless the transport is closed already.
    /// Returns whether it was published.
    fn publish(&self, link: Link) -> bool {
        self.link.send_if_modified(|current| {
            if matches!(current, Link::Closed) {
                return false;
            }
            *current = link;
            true
        })
    }

    /// Marks the transport closed and wakes everyone.
    pub(super) fn shut(&self) -> bool {
        let first = self.begin_close();
        self.link.send_replace(Link::Closed);
        self.wake.notify_one();
        first
    }

    /// Marks the transport closed (calls fail from now on) without closing
    /// the connection yet; false if it was already. [`shut`](Self::shut)
    /// closes it.
    pub(super) fn begin_close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }
}

/// Opens a plain connection (no lapin recovery), with its events, on the
/// [io runtime](io_runtime) (or the caller's, without
/// [`AmqpOptions::io_thread`]).
pub(super) async fn open(
    uri: &AMQPUri,
    options: &AmqpOptions,
) -> lapin::Result<(Connection, Events)> {
    let name = options
        .connection_name
        .clone()
        .unwrap_or_else(|| "enoki".into());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let conn = if options.io_thread {
        let runtime = async_rs::Runtime::tokio_with_handle(io_runtime()?);
        Connection::connect_uri_with_runtime(uri.clone(), properties, runtime).await?
    } else {
        Connection::connect_uri(uri.clone(), properties).await?
    };
    // lapin only sends events once someone listens: listen at once.
    let events: Events = Box::pin(conn.events_listener());
    Ok((conn, events))
}

/// [`open`] for a transport's first connection: a try with no answer in
/// [`FIRST_ATTEMPT_TIMEOUT`] is abandoned and made once more (lapin
/// has, rarely, lost the error of a refused connection and waited for
/// ever), then reported as timed out.
pub(super) async fn open_first(
    uri: &AMQPUri,
    options: &AmqpOptions,
) -> lapin::Result<(Connection, Events)> {
    for _ in 0..2 {
        match tokio::time::timeout(FIRST_ATTEMPT_TIMEOUT, open(uri, options)).await {
            Ok(opened) => return opened,
            Err(_) => tracing::debug!(
                host = %uri.authority.host,
                port = uri.authority.port,
                "no answer from the broker within {FIRST_ATTEMPT_TIMEOUT:?}"
            ),
        }
    }
    Err(lapin::Error::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from the broker",
    )))
}

/// The runtime every AMQP connection's io loop and heartbeats run on: one
/// thread of its own (`enoki-amqp-io`), started at the first connection.
/// On the caller's runtime, a handler that holds its thread without
/// awaiting (CPU-bound work) would stop heartbeats and reads with it, and
/// past the heartbeat timeout the broker would close the connection and
/// redeliver the request (nameko issue #477).
fn io_runtime() -> lapin::Result<tokio::runtime::Handle> {
    static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(runtime) = IO.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("enoki-amqp-io")
        .enable_all()
        .build()
        .map_err(lapin::Error::from)?;
    // A racing first connection may have won: its runtime is kept, this
    // one dropped (off any runtime thread, in the background).
    if let Err(spare) = IO.set(runtime) {
        spare.shutdown_background();
    }
    Ok(IO.get().expect("set above").handle().clone())
}

/// How often [`guarded`] looks at the connection while a call is pending.
const WATCHDOG: Duration = Duration::from_millis(100);

/// Runs a lapin call, giving up with an I/O error (which maps to
/// [`Error::ConnectionLost`]) once its connection is gone: lapin 4.12 does
/// not resolve what is queued for an io loop that already stopped (an ack,
/// a publish, a channel open racing the loss), so such a call would hang.
pub(super) async fn guarded<T>(
    connection: &ConnectionStatus,
    call: impl Future<Output = lapin::Result<T>>,
) -> lapin::Result<T> {
    let mut call = std::pin::pin!(call);
    loop {
        match tokio::time::timeout(WATCHDOG, call.as_mut()).await {
            Ok(result) => return result,
            Err(_) if !connection.connected() => {
                return Err(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection was lost before the broker answered",
                )));
            }
            Err(_) => {}
        }
    }
}

/// Keeps the connection going until the transport is closed.
pub(super) async fn supervise(shared: Arc<Shared>, mut live: Arc<Live>, mut events: Events) {
    loop {
        let Some(reason) = watch_connection(&shared, &live, &mut events).await else {
            // Cancels, returns and rejects first, on the open connection.
            shared.settling.close();
            if tokio::time::timeout(SETTLE_TIMEOUT, shared.settling.wait())
                .await
                .is_err()
            {
                tracing::debug!("AMQP consumers still settling at close; closing anyway");
            }
            shutdown(live).await;
            return;
        };
        let generation = live.generation;
        drop(live);
        if !shared.publish(Link::Down) {
            return;
        }
        if !shared.options.auto_recover {
            tracing::error!(
                uri = %shared.endpoints.current().shown,
                reason = %reason,
                "AMQP connection lost; auto_recover is off, so the transport stays down"
            );
            return;
        }
        tracing::warn!(
            uri = %shared.endpoints.current().shown,
            reason = %reason,
            "AMQP connection lost; reconnecting"
        );
        let Some((new_live, new_events, took, attempts)) = reconnect(&shared, generation + 1).await
        else {
            return;
        };
        if !shared.publish(Link::Up(new_live.clone())) {
            shutdown(new_live).await;
            return;
        }
        tracing::info!(
            uri = %shared.endpoints.current().shown,
            after = ?took,
            attempts,
            "AMQP connection re-established; topology replayed, consumers resume"
        );
        live = new_live;
        events = new_events;
    }
}

/// Waits until the connection is lost (`Some(reason)`) or the transport
/// closed (`None`).
async fn watch_connection(shared: &Shared, live: &Live, events: &mut Events) -> Option<String> {
    loop {
        if shared.is_closed() {
            return None;
        }
        if !live.connected() {
            let mut reason = if live.conn.status().closed() {
                "the connection was closed".to_owned()
            } else {
                "the connection failed".to_owned()
            };
            // lapin's error event, if already sent, says why.
            while let Some(Some(event)) = events.next().now_or_never() {
                if let Event::Error(err) = event {
                    reason = err.to_string();
                }
            }
            return Some(reason);
        }
        tokio::select! {
            event = events.next() => match event {
                // Channel errors come this way too: only a dead connection
                // counts.
                Some(Event::Error(err)) if !live.connected() && !shared.is_closed() => {
                    return Some(err.to_string());
                }
                Some(_) => {}
                None => *events = Box::pin(futures::stream::pending()),
            },
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Reconnects with backoff until it works (`Some`) or the transport closes
/// (`None`). With several broker addresses each attempt goes to the next
/// one, starting after the one just lost; the backoff grows once per round
/// of all of them.
async fn reconnect(
    shared: &Arc<Shared>,
    generation: u64,
) -> Option<(Arc<Live>, Events, Duration, u32)> {
    let start = Instant::now();
    let mut delay = MIN_BACKOFF;
    let mut attempts = 0u32;
    let count = shared.endpoints.len();
    let lost = shared.endpoints.current_index();
    loop {
        if (attempts as usize).is_multiple_of(count) {
            if !pause(shared, delay).await {
                return None;
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        attempts += 1;
        let index = (lost + attempts as usize) % count;
        let endpoint = shared.endpoints.get(index);
        let attempt = tokio::spawn({
            let shared = shared.clone();
            async move { open(&shared.endpoints.get(index).uri, &shared.options).await }
        });
        let abort = attempt.abort_handle();
        let opened = tokio::select! {
            opened = tokio::time::timeout(ATTEMPT_TIMEOUT, attempt) => opened,
            () = closed(shared) => {
                abort.abort();
                return None;
            }
        };
        let (conn, events) = match opened {
            Ok(Ok(Ok(opened))) => opened,
            Ok(Ok(Err(err))) => {
                tracing::debug!(
                    uri = %endpoint.shown,
                    attempt = attempts,
                    error = %connect_reason(&err),
                    "AMQP reconnection attempt failed"
                );
                continue;
            }
            Ok(Err(_)) => continue,
            Err(_) => {
                abort.abort();
                tracing::debug!(
                    uri = %endpoint.shown,
                    attempt = attempts,
                    "AMQP reconnection attempt timed out"
                );
                continue;
            }
        };
        let live = Arc::new(Live { conn, generation });
        let replay = guarded(live.conn.status(), replay(shared, &live));
        let replayed = tokio::time::timeout(REPLAY_TIMEOUT, replay)
            .await
            .unwrap_or_else(|_| Err(io_timeout()));
        match replayed {
            Ok(()) => {
                shared.endpoints.set_current(index);
                return Some((live, events, start.elapsed(), attempts));
            }
            Err(err) => {
                tracing::debug!(
                    uri = %endpoint.shown,
                    attempt = attempts,
                    error = %err,
                    "AMQP connection lost again while replaying the topology"
                );
                if live.connected() {
                    let _ = tokio::time::timeout(
                        CLOSE_TIMEOUT,
                        live.conn.close(320, "topology replay failed".into()),
                    )
                    .await;
                }
            }
        }
    }
}

fn io_timeout() -> lapin::Error {
    lapin::Error::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the topology replay timed out",
    ))
}

/// Sleeps `delay`, or returns false at once if the transport closes.
async fn pause(shared: &Shared, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => !shared.is_closed(),
        () = closed(shared) => false,
    }
}

/// Resolves once the transport is closed.
async fn closed(shared: &Shared) {
    let mut rx = shared.link.subscribe();
    let _ = rx.wait_for(|link| matches!(link, Link::Closed)).await;
}

/// Redeclares, on the new connection, every exchange, queue and binding
/// this transport declared and did not delete. A declaration the broker
/// refuses (say a queue redeclared elsewhere with other flags) is logged
/// and skipped; a connection failure aborts the replay.
async fn replay(shared: &Shared, live: &Live) -> lapin::Result<()> {
    let (exchanges, queues, bindings) = {
        let topology = shared.topology.lock();
        (
            topology.exchanges.values().cloned().collect::<Vec<_>>(),
            topology.queues.values().cloned().collect::<Vec<_>>(),
            topology.bindings.clone(),
        )
    };
    let mut channel = live.conn.create_channel().await?;
    for exchange in &exchanges {
        let result = declare_exchange_on(&channel, exchange).await;
        skip_refused(live, &mut channel, result, "exchange", &exchange.name).await?;
    }
    for queue in &queues {
        let result = declare_queue_on(&channel, queue).await;
        skip_refused(live, &mut channel, result, "queue", &queue.name).await?;
    }
    for (queue, exchange, pattern) in &bindings {
        let result = channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                pattern.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        let what = format!("{queue} -> {exchange} ({pattern})");
        skip_refused(live, &mut channel, result, "binding", &what).await?;
    }
    let _ = channel.close(200, "OK".into()).await;
    Ok(())
}

/// Passes a replay step's result on; a refusal by the broker (which closed
/// `channel`) is logged and replaced by a fresh channel instead.
async fn skip_refused(
    live: &Live,
    channel: &mut Channel,
    result: lapin::Result<()>,
    what: &str,
    name: &str,
) -> lapin::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(err) if is_soft_error(&err) && live.connected() => {
            tracing::warn!(
                error = %err,
                "could not redeclare {what} `{name}` after reconnecting; skipped"
            );
            *channel = live.conn.create_channel().await?;
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Closes the connection and waits (bounded) for lapin's io thread to end,
/// so that nothing of it runs on after the runtime shuts down.
async fn shutdown(live: Arc<Live>) {
    let start = Instant::now();
    if live.connected() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, live.conn.close(200, "OK".into())).await;
    }
    // Calls in progress may hold the connection a moment longer.
    let mut live = live;
    let deadline = Instant::now() + Duration::from_secs(1);
    let conn = loop {
        match Arc::try_unwrap(live) {
            Ok(owned) => break owned.conn,
            Err(shared) if Instant::now() < deadline => {
                live = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                tracing::debug!("AMQP connection still in use at close; not waiting for it");
                return;
            }
        }
    };
    if conn.status().connected() {
        // The close failed (a silent network?): joining would hang.
        tracing::debug!("AMQP connection close unanswered; not waiting for lapin's io thread");
        return;
    }
    let (done, joined) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("enoki-amqp-close".into())
        .spawn(move || {
            let _ = conn.run();
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), joined).await;
    }
    tracing::debug!(took = ?start.elapsed(), "AMQP connection closed");
}

/// Alive while anything may still use the connection: the transport, its
/// consumers and their unsettled deliveries. The last one gone stops the
/// supervisor, which closes the connection.
pub(super) struct Owner {
    pub(super) shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.shut();
    }
}
