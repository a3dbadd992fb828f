//! Request and response bodies as they pass through the lb: streamed frame by frame, never
//! collected.
//!
//! [`ReqBody`] enforces the body size limit while streaming (a client that lies with chunked
//! encoding cannot push more than the limit). [`RespBody`] relays the upstream's frames as they
//! arrive, so server-sent events reach the client unbuffered, and it carries the connection
//! lease: when the last frame has passed, the connection returns to the pool and the upstream's
//! in-flight count drops.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pool::Sender;
use crate::upstream::{Backend, InFlight};

/// Boxed error used by the bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past `SEATGATE_LB_MAX_BODY_BYTES` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    /// The configured limit.
    pub limit: u64,
}

/// A request body on its way to an upstream.
pub enum ReqBody {
    /// No body (most GETs): nothing to stream, and the request can be rebuilt for a retry.
    Empty,
    /// The client's body, counted as it streams.
    Streaming {
        /// The client's body.
        inner: Incoming,
        /// Bytes seen so far.
        seen: u64,
        /// The limit.
        limit: u64,
    },
}

impl ReqBody {
    /// Wraps a client body with the size limit.
    pub fn limited(inner: Incoming, limit: u64) -> Self {
        Self::Streaming { inner, seen: 0, limit }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Streaming { inner, seen, limit } => match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        *seen = seen.saturating_add(data.len() as u64);
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: *limit }))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// What a response body holds on to while it streams: the upstream connection (returned to the
/// pool only after a complete response) and the in-flight count.
pub(crate) struct Lease {
    pub(crate) backend: Arc<Backend>,
    pub(crate) sender: Sender,
    pub(crate) _in_flight: InFlight,
}

impl Lease {
    /// The response was read to the end: the connection may carry another request.
    fn finish(self) {
        self.backend.pool().put(self.sender);
    }
}

/// A response body sent to the client.
pub struct RespBody {
    kind: RespKind,
}

enum RespKind {
    /// A body the lb made itself (problem+json, metrics).
    Full(Option<Bytes>),
    /// An upstream's body, relayed frame by frame.
    Upstream { inner: Incoming, lease: Option<Lease> },
}

impl RespBody {
    /// A complete in-memory body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { kind: RespKind::Full(if bytes.is_empty() { None } else { Some(bytes) }) }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self { kind: RespKind::Full(None) }
    }

    pub(crate) fn upstream(inner: Incoming, lease: Lease) -> Self {
        Self { kind: RespKind::Upstream { inner, lease: Some(lease) } }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().kind {
            RespKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RespKind::Upstream { inner, lease } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    // Release as soon as the upstream is done, before hyper gets round to
                    // dropping this body: the connection can serve the next request sooner.
                    None => {
                        if let Some(lease) = lease.take() {
                            lease.finish();
                        }
                    }
                    Some(Ok(_)) if inner.is_end_stream() => {
                        if let Some(lease) = lease.take() {
                            lease.finish();
                        }
                    }
                    // A broken upstream body: the lease drops with it, closing the connection.
                    Some(Err(_)) => drop(lease.take()),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RespKind::Full(bytes) => bytes.is_none(),
            RespKind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RespKind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            RespKind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        // Bodies hyper never polls (HEAD, 204, 304, empty) end here with the stream complete;
        // anything else dropped early (client went away) must not go back to the pool.
        if let RespKind::Upstream { inner, lease } = &mut self.kind
            && inner.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.finish();
        }
    }
}
