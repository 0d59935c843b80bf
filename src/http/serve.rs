//! Serving connections: the accept loop and what bounds each connection.
//!
//! A client that opens connections and never finishes a request must not
//! lock anyone else out, so every connection is held to limits:
//!
//! - **admission**: at most `max_connections` open at once, and at most
//!   `max_connections_per_ip` from one address; a connection over either cap
//!   is closed as soon as it is accepted (never queued);
//! - **header read timeout**: a request's headers must be complete within it,
//!   counted from the connection's opening or from the first byte of a later
//!   request on a kept-alive connection;
//! - **idle timeout**: a kept-alive connection with no request in flight and
//!   none begun is closed after it;
//! - **body read timeout**: a request's body must be complete within it,
//!   counted from the end of its headers; reading it fails after that.
//!
//! Otherwise no timer of this module applies while a request runs (from
//! complete headers until its response has been handed over): how long a
//! request may compute is decided by the request's own limits.
//!
//! On shutdown the loop stops accepting, closes the connections with no
//! request in flight (idle, or still sending headers), lets the others finish
//! their request and close, and returns when all have; the caller bounds
//! that wait by the grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::settings::HttpSettings;

/// The bounds every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may stay idle.
    pub idle_timeout: Duration,
    /// Time to send a request's body, from the end of its headers.
    pub body_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
}

impl From<&HttpSettings> for ConnectionLimits {
    fn from(settings: &HttpSettings) -> Self {
        Self {
            header_read_timeout: settings.header_read_timeout(),
            idle_timeout: settings.idle_timeout(),
            body_read_timeout: settings.body_read_timeout(),
            max_connections: settings.max_connections,
            max_connections_per_ip: settings.max_connections_per_ip,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets every
/// open connection finish its request in flight and returns once all are
/// closed (drop the future to cut them off).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let admission = Admission::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(ticket) = admission.admit(peer.ip()) else {
                        // Closed at once, unanswered.
                        tracing::debug!(http.peer = %peer, "connection refused: too many open connections");
                        continue;
                    };
                    connections.spawn(connection(stream, peer, router.clone(), limits, ticket, stop_rx.clone()));
                }
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, a timer of [`ConnectionLimits`]
/// fires, or shutdown has let its request in flight finish.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    ticket: Ticket,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        _ticket: ticket,
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = tracked.begin();
        let router = router.clone();
        async move {
            let request = request.map(|body| {
                Body::new(Deadline {
                    body,
                    deadline: Box::pin(tokio::time::sleep(limits.body_read_timeout)),
                })
            });
            let response = router.oneshot(request).await?;
            Ok::<Response, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    body,
                    _guard: guard,
                })
            }))
        }
    });
    // The timers below replace hyper's own header timer, which would also
    // close idle kept-alive connections after the header timeout.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let expired = activity.expired(limits);
    tokio::pin!(expired);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(http.peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut expired => {
                tracing::debug!(http.peer = %peer, "connection closed: header read or idle timeout");
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                // A request whose headers are still coming has not begun:
                // close now rather than wait for the rest.
                if activity.no_request_in_flight() {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Counts open connections, overall and per IP address.
#[derive(Clone)]
struct Admission {
    limits: ConnectionLimits,
    open: Arc<Mutex<OpenConnections>>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    /// A ticket for one more connection from `ip`, or `None` when a cap is reached.
    fn admit(&self, ip: IpAddr) -> Option<Ticket> {
        let ip = client_of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.limits.max_connections
            || from_ip >= self.limits.max_connections_per_ip
        {
            return None;
        }
        open.total += 1;
        open.by_ip.insert(ip, from_ip + 1);
        Some(Ticket {
            open: self.open.clone(),
            ip,
        })
    }
}

/// Who a peer address stands for under the per-address cap: an IPv4
/// address (also when it reaches an IPv6 listener), or the /64 network of an
/// IPv6 address, which one subscriber usually holds whole.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

/// One admitted connection; dropping it frees its place.
struct Ticket {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Where a connection stands, which decides the timer that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers, since the connection opened or since
    /// the first byte of the request arrived.
    Headers(Instant),
    /// Kept alive with nothing in flight, since the last response.
    Idle(Instant),
    /// Requests in flight (more than one only after an upgrade).
    Busy(usize),
}

/// The phase of one connection, moved by its reads and its requests; its
/// watcher is woken at every change of phase.
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Headers(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = f(*phase) {
            *phase = next;
            // One waiter, the watcher: a permit stored now is not lost if it
            // is between two looks at the phase.
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: on an idle connection, a new request has begun.
    fn read(&self) {
        self.update(|phase| match phase {
            Phase::Idle(_) => Some(Phase::Headers(Instant::now())),
            Phase::Headers(_) | Phase::Busy(_) => None,
        });
    }

    /// A request's headers are complete; the returned guard ends it.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.update(|phase| match phase {
            Phase::Busy(n) => Some(Phase::Busy(n + 1)),
            Phase::Headers(_) | Phase::Idle(_) => Some(Phase::Busy(1)),
        });
        RequestGuard(self.clone())
    }

    fn end(&self) {
        self.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Some(Phase::Busy(n - 1)),
            _ => Some(Phase::Idle(Instant::now())),
        });
    }

    /// Whether no request is in flight (idle, or a request's headers still coming).
    fn no_request_in_flight(&self) -> bool {
        matches!(
            *self.phase.lock().unwrap_or_else(PoisonError::into_inner),
            Phase::Headers(_) | Phase::Idle(_)
        )
    }

    /// When the connection must be closed, as things stand.
    fn deadline(&self, limits: ConnectionLimits) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Headers(since) => Some(since + limits.header_read_timeout),
            Phase::Idle(since) => Some(since + limits.idle_timeout),
            Phase::Busy(_) => None,
        }
    }

    /// Completes when a deadline passes with the connection still in its phase.
    async fn expired(&self, limits: ConnectionLimits) {
        loop {
            match self.deadline(limits) {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// Ends its request when dropped: hyper drops a response body once it has
/// written it, or when the connection goes away.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that ends its request when dropped.
struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once its deadline has passed before it was
/// read to the end (a client trickling its body holds nothing for long).
struct Deadline {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Some(Err("the request body did not arrive in time".into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream that reports its reads to the connection's [`Activity`],
/// and holds the connection's place while it is open (also after an
/// upgrade, when it outlives the HTTP connection).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _ticket: Ticket,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            max_connections: total,
            max_connections_per_ip: per_ip,
        }
    }

    #[test]
    fn admission_caps_connections_overall_and_per_address() {
        let admission = Admission::new(limits(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert!(admission.admit(a).is_none(), "a third from one address");
        let _third = admission.admit(b).unwrap();
        assert!(admission.admit(b).is_none(), "a fourth overall");
        drop(first);
        assert!(
            admission.admit(a).is_some(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn an_ipv6_network_counts_as_one_client() {
        let one = |ip: &str| client_of(ip.parse().unwrap());
        assert_eq!(one("2001:db8:1:2::1"), one("2001:db8:1:2:ffff::9"));
        assert_ne!(one("2001:db8:1:2::1"), one("2001:db8:1:3::1"));
        assert_eq!(one("::ffff:10.0.0.1"), one("10.0.0.1"));
        assert_ne!(one("10.0.0.1"), one("10.0.0.2"));
    }

    fn phase(activity: &Activity) -> Phase {
        *activity.phase.lock().unwrap()
    }

    #[test]
    fn the_timer_follows_the_phase() {
        let limits = limits(1, 1);
        let activity = Arc::new(Activity::new());
        let Phase::Headers(opened) = phase(&activity) else {
            panic!("a new connection reads headers")
        };
        assert_eq!(
            activity.deadline(limits),
            Some(opened + limits.header_read_timeout)
        );
        let guard = activity.begin();
        assert_eq!(activity.deadline(limits), None, "no timer while busy");
        drop(guard);
        let Phase::Idle(done) = phase(&activity) else {
            panic!("idle once the response is handed over")
        };
        assert_eq!(activity.deadline(limits), Some(done + limits.idle_timeout));
        activity.read();
        let Phase::Headers(first_byte) = phase(&activity) else {
            panic!("the first byte of a request starts the header timer")
        };
        activity.read();
        assert_eq!(
            activity.deadline(limits),
            Some(first_byte + limits.header_read_timeout),
            "later bytes do not extend it"
        );
    }

    #[tokio::test]
    async fn the_watcher_follows_a_shorter_deadline_of_a_new_phase() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_millis(10),
            ..limits(1, 1)
        };
        let activity = Arc::new(Activity::new());
        let watcher = tokio::spawn({
            let activity = activity.clone();
            async move { activity.expired(limits).await }
        });
        // The watcher sleeps towards the header deadline, ten minutes away,
        // until the phase changes.
        tokio::task::yield_now().await;
        drop(activity.begin());
        tokio::time::timeout(Duration::from_secs(60), watcher)
            .await
            .expect("the idle deadline ends the watch")
            .unwrap();
    }
}
