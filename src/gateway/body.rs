//! Request bodies that must keep moving: a body gets a grace period, then must arrive at a
//! minimum average rate, or reading it fails with [`BodyTooSlow`]. One byte a second can no
//! longer hold a connection (and its buffer) open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use troupe_actors::metrics as metric_names;

use super::error::{ApiCode, ApiError};

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

/// Room for bodies that are read before anything vouches for them: a webhook's signature
/// covers its body, so the body is read first. Node-wide and counted in KiB, so a burst of
/// half-sent webhook bodies holds at most this much memory; past it, a webhook is refused
/// at once with 503 (platforms send it again) rather than buffered.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    kib: Arc<Semaphore>,
    /// KiB taken now, for the gauge.
    taken: Arc<AtomicUsize>,
}

/// Room taken for one body; dropping it gives the room back.
#[derive(Debug)]
pub(crate) struct BodyRoom {
    _permit: OwnedSemaphorePermit,
    kib: usize,
    taken: Arc<AtomicUsize>,
}

impl Drop for BodyRoom {
    fn drop(&mut self) {
        let taken = self.taken.fetch_sub(self.kib, Ordering::AcqRel) - self.kib;
        metrics::gauge!(metric_names::WEBHOOK_BODY_BYTES).set((taken * 1024) as f64);
    }
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX) as usize;
        Self {
            kib: Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))),
            taken: Arc::default(),
        }
    }

    /// Room for a body of at most `limit` bytes (its `Content-Length` when that is less):
    /// 413 at once when the announced length is over `limit`, 503 when the room is taken.
    pub(crate) fn reserve(&self, headers: &HeaderMap, limit: usize) -> Result<BodyRoom, ApiError> {
        let announced = headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if announced.is_some_and(|length| length > limit) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        let kib = announced.unwrap_or(limit).div_ceil(1024).max(1);
        let permits = u32::try_from(kib).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.kib)
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                metrics::counter!(metric_names::HTTP_REQUESTS_REFUSED, "reason" => "body_budget")
                    .increment(1);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ApiCode::ServerBusy,
                    "too many webhook bodies are being read at once; send it again shortly",
                )
            })?;
        let taken = self.taken.fetch_add(kib, Ordering::AcqRel) + kib;
        metrics::gauge!(metric_names::WEBHOOK_BODY_BYTES).set((taken * 1024) as f64);
        Ok(BodyRoom {
            _permit: permit,
            kib,
            taken: Arc::clone(&self.taken),
        })
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
                ApiCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            )
        } else if is_too_slow(error.as_ref()) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ApiCode::RequestTimeout,
                error.to_string(),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ApiCode::IncompleteBody,
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

/// Most bytes of an owner's request body on the managing routes (pairing, identities,
/// room tokens).
const MAX_ADMIN_BODY_BYTES: usize = 16 * 1024;

/// A small JSON body: 413 past [`MAX_ADMIN_BODY_BYTES`] (read no further), 400
/// `invalid_json` when it is not the expected JSON.
pub(crate) async fn admin_json_body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, MAX_ADMIN_BODY_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            ApiCode::InvalidJson,
            format!("the body is not the expected JSON: {error}"),
        )
    })
}
