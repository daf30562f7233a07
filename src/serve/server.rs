//! The connections: an accept loop that caps how many are open and backs off when `accept`
//! fails, each connection served by hyper's HTTP/1.1 (keep-alive, pipelining, HEAD, one
//! Content-Length) with a deadline on its request head.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections open at once. Each costs a socket and a few KiB, not a thread, so slow clients
/// are cheap; past this many (under the usual 1024 file descriptors, with room for the run
/// files) a new connection is told 503 and closed.
pub const MAX_CONNECTIONS: usize = 256;
/// The request line and headers must arrive within this, however slowly they trickle in; an
/// idle keep-alive connection is closed after it too. (The body has its own deadline,
/// [`super::routes::BODY_TIMEOUT`].)
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes none of an answer's bytes for this long (it stopped reading, its
/// buffers are full) is dropped: hyper has no deadline on writes, and such a client would
/// otherwise hold its connection for ever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head, as hyper buffers it (its minimum is 8 KiB): 431 beyond.
const MAX_HEAD: usize = 16 << 10;
/// Headers of one request: 431 beyond.
const MAX_HEADERS: usize = 64;
/// A failed `accept` that is not about one client (no file descriptor left, EMFILE) fails
/// again at once: wait this long, doubling up to [`ACCEPT_BACKOFF_MAX`], rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After the last answer, the client may still be sending (a body refused with 413): its
/// bytes are read and dropped for at most this long, so that closing does not reset the
/// connection before it has read the answer.
const LINGER: Duration = Duration::from_millis(500);
/// What a connection beyond [`MAX_CONNECTIONS`] is told, within [`BUSY_WRITE`].
const BUSY: &str = r#"{"error":"too many connections open; try again soon"}"#;
const BUSY_WRITE: Duration = Duration::from_secs(1);

/// Answers connections on `listener` with `app`, for ever.
pub async fn run(listener: TcpListener, app: Router) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF;
                stream
            }
            // That client is gone; the next one may be fine.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                log::warn!("accept failed: {e}; waiting {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                tokio::spawn(async move {
                    connection(stream, app).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(busy(stream));
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves one connection until the client closes it, a deadline passes or an answer closes it.
async fn connection(stream: TcpStream, app: Router) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(app);
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        // A client that shuts down its writing side after the request still gets the answer.
        .half_close(true)
        .serve_connection(Io::new(stream), service)
        .without_shutdown()
        .await;
    // An error (a malformed request, a client gone or too slow) was answered by hyper where
    // there was anyone to answer.
    if let Ok(parts) = served {
        linger(parts.io.inner.into_inner()).await;
    }
}

/// A connection's socket, with [`WRITE_TIMEOUT`] on writes that cannot proceed.
struct Io {
    inner: TokioIo<TcpStream>,
    /// Since when the pending write has been waiting, as a deadline.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Io {
    fn new(stream: TcpStream) -> Self {
        Self {
            inner: TokioIo::new(stream),
            stalled: None,
        }
    }

    /// `polled` (a write's progress), failed once it has been pending for [`WRITE_TIMEOUT`].
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled)
    }
}

/// Stops writing, then reads what the client still sends for [`LINGER`], and closes.
async fn linger(stream: TcpStream) {
    // Through the std socket: tokio's own shutdown needs its `io-util` feature, which would
    // rebuild every crate depending on tokio (Burn's) for this one call.
    let Ok(std) = stream.into_std() else { return };
    let _ = std.shutdown(std::net::Shutdown::Write);
    let Ok(stream) = TcpStream::from_std(std) else {
        return;
    };
    let mut sink = [0u8; 16 << 10];
    let _ = tokio::time::timeout(LINGER, async {
        while stream.readable().await.is_ok() {
            match stream.try_read(&mut sink) {
                Ok(0) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
}

/// Tells a connection beyond the cap that the server is busy.
async fn busy(stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         cache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{BUSY}",
        BUSY.len()
    );
    let _ = tokio::time::timeout(BUSY_WRITE, async {
        let mut left = answer.as_bytes();
        while !left.is_empty() && stream.writable().await.is_ok() {
            match stream.try_write(left) {
                Ok(written) => left = &left[written..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        linger(stream).await;
    })
    .await;
}
