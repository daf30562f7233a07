//! The connections: an accept loop that caps how many are open and backs off when `accept`
//! fails, each connection served by hyper's HTTP/1.1 (keep-alive, pipelining, HEAD, one
//! Content-Length) with a deadline on its request head, a cap on its requests and on its
//! lifetime; when the cap is full, the connection idle the longest is closed for a new one.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
/// Requests one connection may make: the last one's answer says `Connection: close`.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// How long one connection may stay open: past it, it is closed after its current answer (an
/// idle one at once). With [`MAX_REQUESTS_PER_CONNECTION`], no client holds a connection for
/// ever by pinging it within [`HEAD_TIMEOUT`].
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// A new connection arriving when [`MAX_CONNECTIONS`] are open closes the one idle the longest
/// (no request in progress) and waits this long for its place; 503 when none frees.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// What a connection beyond [`MAX_CONNECTIONS`] is told, within [`BUSY_WRITE`].
const BUSY: &str = r#"{"error":"too many connections open; try again soon"}"#;
const BUSY_WRITE: Duration = Duration::from_secs(1);

/// Answers connections on `listener` with `app`, for ever.
pub async fn run(listener: TcpListener, app: Router) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conns = Arc::new(Conns::default());
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
        let (app, conns) = (app.clone(), conns.clone());
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(stream, app, conns, permit));
            }
            Err(_) if conns.evict_idlest() => {
                let open = open.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(EVICTION_WAIT, open.acquire_owned()).await {
                        Ok(Ok(permit)) => connection(stream, app, conns, permit).await,
                        _ => busy(stream).await,
                    }
                });
            }
            Err(_) => {
                tokio::spawn(busy(stream));
            }
        }
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Requests made.
    requests: AtomicUsize,
    /// When the last request began or ended, in ms since [`Conns::epoch`].
    last_active: AtomicU64,
    /// Told to close ([`Conns::evict_idlest`]).
    evicted: AtomicBool,
    evict: tokio::sync::Notify,
}

/// The open connections.
struct Conns {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Conns {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl Conns {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::default());
        conn.last_active.store(self.now(), Ordering::Relaxed);
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the connection idle the longest (no request in progress: between keep-alive
    /// requests, or still sending its first head) to close; whether there was one.
    fn evict_idlest(&self) -> bool {
        let open = self.lock();
        let idlest = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .filter(|c| !c.evicted.load(Ordering::Acquire))
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        let Some(conn) = idlest else { return false };
        conn.evicted.store(true, Ordering::Release);
        conn.evict.notify_one();
        true
    }
}

/// The router for one connection: counts its requests in progress for [`Conns`], and closes
/// the connection after its [`MAX_REQUESTS_PER_CONNECTION`]th answer.
struct Counted {
    inner: TowerToHyperService<Router>,
    conn: Arc<Conn>,
    conns: Arc<Conns>,
}

type Answer = hyper::Response<axum::body::Body>;

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Counted {
    type Response = Answer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Self::Error>> + Send>>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let (conn, conns) = (self.conn.clone(), self.conns.clone());
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        let last = conn.requests.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_REQUESTS_PER_CONNECTION;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut answer = answer.await;
            conn.last_active.store(conns.now(), Ordering::Relaxed);
            conn.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let (true, Ok(answer)) = (last, &mut answer) {
                answer.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            answer
        })
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serves one connection until the client closes it, a deadline passes, an answer closes it,
/// its lifetime ends or it is evicted; its place (`permit`) is given back before lingering.
async fn connection(
    stream: TcpStream,
    app: Router,
    conns: Arc<Conns>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let (id, conn) = conns.add();
    let service = Counted {
        inner: TowerToHyperService::new(app),
        conn: conn.clone(),
        conns: conns.clone(),
    };
    let mut served = Box::pin(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            // A client that shuts down its writing side after the request still gets the answer.
            .half_close(true)
            .serve_connection(Io::new(stream), service),
    );
    let mut evicted = std::pin::pin!(conn.evict.notified());
    let mut lifetime = std::pin::pin!(tokio::time::sleep(CONNECTION_LIFETIME));
    let mut closing = false;
    let done = std::future::poll_fn(|cx| {
        if !closing && evicted.as_mut().poll(cx).is_ready() {
            if conn.in_flight.load(Ordering::Acquire) == 0 {
                // Nothing is owed to it: closed now (a keep-alive client opens a new one).
                return Poll::Ready(false);
            }
            closing = true;
            served.as_mut().graceful_shutdown();
        }
        if !closing && lifetime.as_mut().poll(cx).is_ready() {
            closing = true;
            served.as_mut().graceful_shutdown();
        }
        served.poll_without_shutdown(cx).map(|r| r.is_ok())
    })
    .await;
    conns.remove(id);
    drop(permit);
    // An error (a malformed request, a client gone or too slow) was answered by hyper where
    // there was anyone to answer.
    if done {
        let parts = Pin::into_inner(served).into_parts();
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
