//! The JSON answers every part of the server gives: the API's bodies and its `{"error"}`s.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// A JSON `{"error": message}` answer.
pub(super) fn error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = json_body(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// A JSON body, never cached.
pub(super) fn json_body(body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Runs change while the page is open: never answer from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
