//! The smallest HTTP/1.1 server the page needs: one request per connection (`Connection:
//! close`), bodies by `Content-Length` only, every read bounded in size and time. The request
//! head is parsed by `httparse` (hyper's parser, already built for `ureq`).
//!
//! Why not a server crate: tiny_http 0.12, the small synchronous one, drains an unread body on
//! drop into one buffer of the size the client declared, so a request claiming a terabyte
//! aborts the whole process (reproduced; the fix, tiny-http PR #290, is unreleased).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

/// The largest request body read (a drawing pad's PNG is a few KiB, 784 numbers as JSON at most
/// ~20 KiB).
pub const MAX_BODY: usize = 1 << 20;
/// The largest request line and headers.
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 64;
/// A client slower than this on any read or write is dropped, so it cannot hold a worker.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A request as the routes see it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The target as sent: path and query, not percent-decoded.
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, media type, body, and any further headers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, &'static str)>,
}

/// Answers connections from `listener` on `workers` threads with `handle`, for ever. A handler
/// that panics answers 500; the worker goes on.
pub fn serve<H>(listener: TcpListener, workers: usize, handle: H)
where
    H: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let (sender, receiver) = mpsc::channel::<TcpStream>();
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..workers {
        let (receiver, handle) = (receiver.clone(), handle.clone());
        std::thread::spawn(move || {
            loop {
                let next = receiver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .recv();
                let Ok(stream) = next else { return };
                connection(stream, &*handle);
            }
        });
    }
    for stream in listener.incoming() {
        // A connection that failed while being accepted concerns that client only.
        if let Ok(stream) = stream
            && sender.send(stream).is_err()
        {
            return;
        }
    }
}

fn connection(stream: TcpStream, handle: &(dyn Fn(&Request) -> Response + Sync)) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let response = match read_request(&mut reader, &mut writer) {
        Ok(request) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(&request)))
            .unwrap_or_else(|_| error(500, "the server failed on this request")),
        // The client went away or stalled: nobody to answer.
        Err(Refused::Gone) => return,
        Err(Refused::Status(status, message)) => error(status, &message),
    };
    let _ = write_response(&mut writer, &response);
    // Closing with unread bytes would reset the connection, and the client could lose the
    // answer (a 413 while it still sends): stop writing, then read what is left, briefly.
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)));
    let _ = std::io::copy(&mut reader.take(8 * MAX_BODY as u64), &mut std::io::sink());
}

/// Why a request gets no handler: an HTTP status and message, or no client to answer.
enum Refused {
    Status(u16, String),
    Gone,
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Request, Refused> {
    let head = read_head(reader)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("the request head is incomplete")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused::Status(
                431,
                format!("more than {MAX_HEADERS} headers"),
            ));
        }
        Err(e) => return Err(bad(&format!("malformed HTTP request: {e}"))),
    }
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_string(),
        target: parsed.path.unwrap_or_default().to_string(),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).trim().to_string();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect(),
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        return Err(Refused::Status(
            411,
            "send the body with a Content-Length".into(),
        ));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| bad(&format!("Content-Length {text:?} is not a length")))?,
    };
    if length > MAX_BODY {
        return Err(Refused::Status(
            413,
            format!("the body is over {} MiB", MAX_BODY >> 20),
        ));
    }
    if length > 0
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| Refused::Gone)?;
    }
    // At most MAX_BODY bytes are ever read, whatever the header says.
    request.body.reserve(length);
    reader
        .take(length as u64)
        .read_to_end(&mut request.body)
        .map_err(|_| Refused::Gone)?;
    if request.body.len() < length {
        return Err(Refused::Gone);
    }
    Ok(request)
}

/// The request line and headers, up to the blank line, at most [`MAX_HEAD`] bytes.
fn read_head(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, Refused> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = reader
            .by_ref()
            .take((MAX_HEAD + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .map_err(|_| Refused::Gone)?;
        if read == 0 {
            return if head.is_empty() {
                Err(Refused::Gone)
            } else {
                Err(bad("the connection closed inside the request head"))
            };
        }
        if head.len() > MAX_HEAD {
            return Err(Refused::Status(
                431,
                format!("the request head is over {} KiB", MAX_HEAD >> 10),
            ));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
    }
}

fn bad(message: &str) -> Refused {
    Refused::Status(400, message.to_string())
}

/// A JSON `{"error": message}` answer.
pub fn error(status: u16, message: &str) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: serde_json::json!({ "error": message })
            .to_string()
            .into_bytes(),
        headers: vec![("Cache-Control", "no-store")],
    }
}

fn write_response(writer: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         X-Content-Type-Options: nosniff\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(&response.body)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}
