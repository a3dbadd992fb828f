//! Accepting client connections and draining them on shutdown.
//!
//! Each accepted connection holds a permit of the connection cap (`SEATGATE_LB_MAX_CONNECTIONS`):
//! at the cap the accept loop waits, so the kernel backlog absorbs a surge instead of the lb
//! running out of file descriptors. On the stop signal the loop drops the listener (no new
//! connections), and each connection finishes the request it is serving, then closes; the
//! hard-stop signal, sent when the drain deadline passes, cuts whatever is left.
//!
//! With `SEATGATE_LB_WORKER_THREADS` the binary runs one single-threaded runtime per worker
//! thread, each with its own `SO_REUSEPORT` listener on the same address (the kernel spreads
//! connections over them) and its own upstream connection pools, the way nginx runs worker
//! processes. A request then lives on one thread from accept to response: no work stealing and no
//! cross-thread wake-ups, which on a small machine shared with the upstreams costs less CPU than a
//! work-stealing runtime.

use std::cell::Cell;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::RespBody;

thread_local! {
    static WORKER_ID: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running the caller (0 outside worker threads).
pub(crate) fn worker_id() -> usize {
    WORKER_ID.with(Cell::get)
}

/// Marks the calling thread as worker `id`.
pub(crate) fn set_worker_id(id: usize) {
    WORKER_ID.with(|w| w.set(id));
}

/// A listener that shares its address with the other workers' (`SO_REUSEPORT`).
pub(crate) fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Signals and bookkeeping shared by every listener of one lb.
#[derive(Clone)]
pub(crate) struct Lifecycle {
    /// Stop accepting; finish in-flight requests.
    pub(crate) stop: CancellationToken,
    /// Drain deadline passed: close every connection now.
    pub(crate) hard_stop: CancellationToken,
    /// Connection tasks, awaited by the drain.
    pub(crate) connections: TaskTracker,
}

/// Serves HTTP/1.1 on `listener` until the stop signal, one task per connection.
pub(crate) async fn accept_loop<F, S>(
    listener: TcpListener,
    make_service: F,
    permits: Arc<Semaphore>,
    header_timeout: Duration,
    life: Lifecycle,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<RespBody>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true).writev(false);
    loop {
        let permit = tokio::select! {
            biased;
            () = life.stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = life.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = life.stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn = builder.serve_connection(TokioIo::new(stream), make_service(peer));
        let (stop, hard_stop) = (life.stop.clone(), life.hard_stop.clone());
        life.connections.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = conn.as_mut() => result,
                        () = hard_stop.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "client connection ended with an error");
            }
        });
    }
}
