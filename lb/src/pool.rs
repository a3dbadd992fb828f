//! Upstream connections: opening them with a timeout, and keeping idle ones for reuse.
//!
//! The lb drives hyper's low-level HTTP/1 client (`hyper::client::conn::http1`) rather than a
//! pooled high-level client because the low-level `try_send_request` hands a request back when it
//! was never written to the connection. That is the fact the retry policy rests on: a request that
//! never left the lb may go to another upstream, whatever its method.
//!
//! Idle connections sit in a bounded lock-free queue per upstream. A connection goes back only
//! once its previous response has been read to the end (hyper can then take the next request);
//! one that the upstream closed is dropped when it is next taken.

use std::io;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ReqBody;
use crate::config::UpstreamUrl;

/// The sending half of one upstream connection.
pub(crate) type Sender = SendRequest<ReqBody>;

/// Why no connection could be opened. In every case nothing was sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
    #[error("HTTP/1 handshake failed: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Idle keep-alive connections to one upstream, for one worker thread.
pub(crate) struct Pool {
    idle: ArrayQueue<Sender>,
}

impl Pool {
    pub(crate) fn new(max_idle: usize) -> Self {
        Self { idle: ArrayQueue::new(max_idle.max(1)) }
    }

    /// An idle connection that is ready for a request, if any. A connection put back a moment
    /// ago may still be finishing its previous exchange inside hyper (or still sending a request
    /// body the upstream answered early): it goes to the back of the queue for later, and is
    /// not waited for, so a request never stalls behind it.
    pub(crate) fn take(&self) -> Option<Sender> {
        for _ in 0..self.idle.len() {
            let sender = self.idle.pop()?;
            if sender.is_ready() {
                return Some(sender);
            }
            if !sender.is_closed() {
                let _ = self.idle.push(sender);
            }
            // A closed one is dropped here, which ends its connection task.
        }
        None
    }

    /// Returns a connection whose last response has been read to the end. A full pool drops it
    /// (the cap on idle sockets).
    pub(crate) fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            let _ = self.idle.push(sender);
        }
    }
}

/// Opens a new HTTP/1 connection to `url` within `timeout` and spawns its driver task.
pub(crate) async fn connect(url: &UpstreamUrl, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    // Requests and small responses are latency-bound; Nagle would hold them back.
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new().writev(false).handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
