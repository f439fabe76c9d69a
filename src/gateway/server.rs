//! The HTTP server under the router: accepts connections through the [`ConnectionGate`],
//! serves HTTP/1.1 (with upgrades, for `/ws`) with a header deadline that also bounds idle
//! keep-alive, and holds every request body to a [`BodyPace`]. Graceful shutdown stops
//! accepting and lets in-flight requests finish.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use troupe_actors::metrics as metric_names;

use super::admission::{ConnectionGate, ConnectionTicket, Overload};
use super::body::{BodyPace, PacedBody};

/// How long a connection on probation has to send a request that proves a token.
const PROBATION_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed `accept` (out of file descriptors), how long to wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Largest request head (request line and headers) a connection may buffer.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The server's timing rules (`server.header_timeout_secs`, `server.min_body_bytes_per_sec`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServerTimeouts {
    /// A request's headers must arrive within this, and an idle keep-alive connection is
    /// closed after it.
    pub(crate) header: Duration,
    pub(crate) body: BodyPace,
}

/// Serves `app` on `listener` until `shutdown`, then waits for in-flight requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    gate: Arc<ConnectionGate>,
    timeouts: ServerTimeouts,
    shutdown: CancellationToken,
) {
    let open = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let ticket = match gate.admit(remote.ip()) {
            Ok(ticket) => Arc::new(ticket),
            Err(overload) => {
                refuse(stream, overload);
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let header_timeout = if ticket.on_probation() {
            PROBATION_HEADER_TIMEOUT
        } else {
            timeouts.header
        };
        let service = connection_service(app.clone(), remote, Arc::clone(&ticket), timeouts.body);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        open.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
            drop(ticket);
        });
    }
    drop(listener);
    open.close();
    open.wait().await;
}

/// The router for one connection: each request carries the connection's ticket and peer
/// address, and its body is paced.
fn connection_service(
    app: Router,
    remote: SocketAddr,
    ticket: Arc<ConnectionTicket>,
    pace: BodyPace,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Send,
> {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut router = app.clone();
        let mut request = request.map(|body| Body::new(PacedBody::new(body, pace)));
        request.extensions_mut().insert(Arc::clone(&ticket));
        request.extensions_mut().insert(ConnectInfo(remote));
        async move { router.call(request).await }
    })
}

/// Answers a connection the gate refused with a JSON 503 and closes it. The answer is
/// written without waiting: a fresh socket's send buffer takes it whole, and a peer that
/// does not read is not worth a task. It is written through the plain socket, because
/// tokio's `try_write` reports "would block" until the reactor has seen the new socket
/// writable once.
fn refuse(stream: TcpStream, overload: Overload) {
    metrics::counter!(metric_names::HTTP_CONNECTIONS_REFUSED, "reason" => overload.as_str())
        .increment(1);
    let message = match overload {
        Overload::Node => "the node has too many open connections; try again shortly",
        Overload::Address => "too many unauthenticated connections from this address",
    };
    let body = super::error::ApiError::new(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        super::error::ApiCode::ServerBusy,
        message,
    )
    .body()
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = stream
        .into_std()
        .and_then(|mut stream| stream.write(answer.as_bytes()));
    if let Err(error) = written {
        tracing::debug!(%error, "could not answer a refused connection");
    }
}
