//! Which request goes where: the page and its two assets, compiled into the binary, and the JSON
//! API of [`super::api`]. Every request gets an answer (a JSON `{"error"}` with a 4xx or 5xx
//! status when it cannot be served); none stops the server.

use super::api::{ApiError, App, Picture};
use std::io::{Cursor, Read};
use tiny_http::{Header, Method, Request, Response};

/// The largest request body read: a drawing pad's PNG is a few KiB, 784 numbers as JSON at
/// most ~20 KiB.
pub const MAX_BODY: usize = 1 << 20;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

type Answer = Response<Cursor<Vec<u8>>>;

/// Answers `request`. A client gone before the answer is written is nothing to report.
pub fn answer(app: &App, mut request: Request) {
    let response = match route(app, &mut request) {
        Ok(response) => response,
        Err(error) => json_response(error.status, &serde_json::json!({"error": error.message})),
    };
    let _ = request.respond(response);
}

fn route(app: &App, request: &mut Request) -> Result<Answer, ApiError> {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = *request.method() == Method::Get;
    let post = *request.method() == Method::Post;
    match segments.as_slice() {
        // The page routes `/runs/{name}` itself, from its address.
        [""] | ["runs", _] if get => Ok(asset(INDEX_HTML, "text/html; charset=utf-8")),
        ["assets", "app.js"] if get => Ok(asset(APP_JS, "text/javascript; charset=utf-8")),
        ["assets", "style.css"] if get => Ok(asset(STYLE_CSS, "text/css; charset=utf-8")),
        ["api", "runs"] if get => Ok(json_response(200, &app.runs()?)),
        ["api", "runs", name] if get => Ok(json_response(200, &app.run_detail(name)?)),
        ["api", "runs", name, "predict"] if post => {
            let checkpoint = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("checkpoint="));
            let png = content_type(request).is_some_and(|t| t.starts_with("image/png"));
            let json = content_type(request).is_none_or(|t| t.starts_with("application/json"));
            if !png && !json {
                return Err(ApiError::new(
                    415,
                    "send application/json ({\"pixels\": […]}) or image/png",
                ));
            }
            let body = body(request)?;
            let picture = if png {
                Picture::Png(&body)
            } else {
                Picture::Json(&body)
            };
            Ok(json_response(200, &app.predict(name, checkpoint, picture)?))
        }
        ["api", "runs", name, "files", file] if get => {
            let (bytes, media) = app.file(name, file)?;
            Ok(with_header(
                Response::from_data(bytes),
                "Content-Type",
                media,
            ))
        }
        [""] | ["runs", _] | ["assets", _] | ["api", "runs", ..] => Err(ApiError::new(
            405,
            format!("{} {path}: method not allowed", request.method()),
        )),
        _ => Err(ApiError::new(404, format!("{path}: no such page"))),
    }
}

fn content_type(request: &Request) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().trim().to_ascii_lowercase())
}

/// The request body, read up to [`MAX_BODY`] whatever its `Content-Length` says.
fn body(request: &mut Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::new(413, format!("the body is over {} MiB", MAX_BODY >> 20));
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::new(400, format!("cannot read the body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(body)
}

fn asset(text: &'static str, media: &str) -> Answer {
    with_header(
        Response::from_data(text.as_bytes().to_vec()),
        "Content-Type",
        media,
    )
}

fn json_response(status: u16, value: &serde_json::Value) -> Answer {
    let response = Response::from_data(value.to_string().into_bytes()).with_status_code(status);
    // Runs change while the page is open: never answer from a cache.
    let response = with_header(response, "Cache-Control", "no-store");
    with_header(response, "Content-Type", "application/json")
}

fn with_header(response: Answer, field: &str, value: &str) -> Answer {
    // Only this file's own constant names and values get here, all valid header text.
    match Header::from_bytes(field.as_bytes(), value.as_bytes()) {
        Ok(header) => response.with_header(header),
        Err(()) => response,
    }
}
