//! Request bodies that must keep moving: a body gets a grace period, then must arrive at a
//! minimum average rate, or reading it fails with [`BodyTooSlow`]. One byte a second can no
//! longer hold a connection (and its buffer) open.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::error::ApiError;

/// How fast a body must arrive: `grace`, plus one second per `bytes_per_sec` received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyPace {
    pub(crate) grace: Duration,
    pub(crate) bytes_per_sec: u64,
}

impl BodyPace {
    fn deadline(self, started: Instant, received: u64) -> Instant {
        let earned = Duration::from_secs_f64(received as f64 / self.bytes_per_sec as f64);
        started + self.grace + earned
    }
}

/// The body arrived slower than the node's minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly (under {bytes_per_sec} bytes/s after {grace:?})")]
pub(crate) struct BodyTooSlow {
    bytes_per_sec: u64,
    grace: Duration,
}

/// An incoming body held to a [`BodyPace`]. The timer is made only if the body is not
/// already there when first read, so a body that comes with its headers costs nothing.
pub(crate) struct PacedBody {
    inner: Incoming,
    pace: BodyPace,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl PacedBody {
    pub(crate) fn new(inner: Incoming, pace: BodyPace) -> Self {
        Self {
            inner,
            pace,
            started: Instant::now(),
            received: 0,
            timer: None,
        }
    }

    fn too_slow(&self) -> axum::BoxError {
        Box::new(BodyTooSlow {
            bytes_per_sec: self.pace.bytes_per_sec,
            grace: self.pace.grace,
        })
    }
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if let Some(timer) = &mut this.timer {
                        timer
                            .as_mut()
                            .reset(this.pace.deadline(this.started, this.received));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.pace.deadline(this.started, this.received);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.too_slow()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a whole body of at most `limit` bytes, stopping as soon as it passes the limit,
/// with the JSON error for each way that can fail: 413 too large, 408 too slow, 400 when
/// the connection broke off.
pub(crate) async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let error = error.into_inner();
        if error.is::<http_body_util::LengthLimitError>() {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes"),
            )
        } else if is_too_slow(error.as_ref()) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                error.to_string(),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "incomplete_body",
                format!("the body could not be read: {error}"),
            )
        }
    })
}

/// Whether a body read failed because the body was too slow (anywhere in the error's chain).
fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTooSlow>() {
            return true;
        }
        current = error.source();
    }
    false
}
