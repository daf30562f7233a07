//! Which request goes where: the page and its two assets, compiled into the binary, and the JSON
//! API of [`super::api`]. Every request gets an answer (a JSON `{"error"}` with a 4xx or 5xx
//! status when it cannot be served); none stops the server.

use super::api::{ApiError, App, Picture};
use super::http::{self, Request, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The answer to `request`.
pub fn answer(app: &App, request: &Request) -> Response {
    route(app, request).unwrap_or_else(|e| http::error(e.status, &e.message))
}

fn route(app: &App, request: &Request) -> Result<Response, ApiError> {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = request.method == "GET";
    let post = request.method == "POST";
    match segments.as_slice() {
        // The page routes `/runs/{name}` itself, from its address.
        [""] | ["runs", _] if get => Ok(asset(INDEX_HTML, "text/html; charset=utf-8")),
        ["assets", "app.js"] if get => Ok(asset(APP_JS, "text/javascript; charset=utf-8")),
        ["assets", "style.css"] if get => Ok(asset(STYLE_CSS, "text/css; charset=utf-8")),
        ["api", "runs"] if get => Ok(json(&app.runs()?)),
        ["api", "runs", name] if get => Ok(json(&app.run_detail(name)?)),
        ["api", "runs", name, "predict"] if post => {
            let checkpoint = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("checkpoint="));
            let media = request.header("content-type").unwrap_or("application/json");
            let media = media.to_ascii_lowercase();
            let picture = if media.starts_with("image/png") {
                Picture::Png(&request.body)
            } else if media.starts_with("application/json") {
                Picture::Json(&request.body)
            } else {
                return Err(ApiError::new(
                    415,
                    "send application/json ({\"pixels\": […]}) or image/png",
                ));
            };
            Ok(json(&app.predict(name, checkpoint, picture)?))
        }
        ["api", "runs", name, "files", file] if get => {
            let (body, content_type) = app.file(name, file)?;
            Ok(Response {
                status: 200,
                content_type,
                body,
                headers: vec![("Cache-Control", "no-store")],
            })
        }
        // A route that exists, asked with another method.
        [""]
        | ["runs", _]
        | ["assets", "app.js" | "style.css"]
        | ["api", "runs"]
        | ["api", "runs", _]
        | ["api", "runs", _, "predict"]
        | ["api", "runs", _, "files", _] => Err(ApiError::new(
            405,
            format!("{} {path}: method not allowed", request.method),
        )),
        _ => Err(ApiError::new(404, format!("{path}: no such page"))),
    }
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    Response {
        status: 200,
        content_type,
        body: text.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

fn json(value: &serde_json::Value) -> Response {
    Response {
        status: 200,
        content_type: "application/json",
        body: value.to_string().into_bytes(),
        // Runs change while the page is open: never answer from a cache.
        headers: vec![("Cache-Control", "no-store")],
    }
}
