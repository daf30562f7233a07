//! Which request goes where: the page and its two assets, compiled into the binary, and the JSON
//! API of [`super::api`]. Every request gets an answer (a JSON `{"error"}` with a 4xx or 5xx
//! status when it cannot be served); none stops the server. The API's work (reading run files,
//! decoding pictures, loading and running models) runs on tokio's blocking threads, never on
//! the async workers that serve the connections.

use super::api::{ApiError, App, Picture, RunAt};
use super::guard::{Hosts, guard};
use super::json::{error, json_body};
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The largest request body read (a drawing pad's PNG is a few KiB, 784 numbers as JSON at most
/// ~20 KiB): 413 when declared or sent beyond it.
pub const MAX_BODY: usize = 1 << 20;
/// A request body must arrive within this once its head has (408 after): a client trickling
/// its body holds a connection no longer than one trickling its head
/// ([`super::server::HEAD_TIMEOUT`]).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pictures decoded at once; more wait their turn (on the async side, holding no thread).
/// One decode holds at most about 80 MiB: the decoder's buffers and the decoded pixels, each
/// capped at 8 bytes a pixel of a 2048² picture (32 MiB, `predict::max_alloc` of
/// [`super::api::MAX_PICTURE_SIDE`]), the grey copies made from them (12 MiB) and the
/// preparation's small ones, besides the body ([`MAX_BODY`]); so pictures hold at most
/// 2 × 80 MiB whatever arrives. The colour profile and text chunks of a PNG are skipped unread.
pub const DECODES_AT_ONCE: usize = 2;

/// What the routes share.
struct Ctx {
    app: App,
    decodes: Semaphore,
}

/// The routes over `app`, behind the [`guard`] for `hosts`.
pub fn router(app: App, hosts: Hosts) -> Router {
    let ctx = Arc::new(Ctx {
        app,
        decodes: Semaphore::new(DECODES_AT_ONCE),
    });
    // `get` answers HEAD too, without the body.
    Router::new()
        // The page routes `/runs/{name}` and the sweeps' pages itself, from its address.
        .route("/", get(page))
        .route("/runs/{name}", get(page))
        .route("/sweeps/{sweep}", get(page))
        .route("/sweeps/{sweep}/runs/{name}", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/runs", get(runs))
        .route("/api/runs/{name}", get(run_detail))
        .route("/api/runs/{name}/predict", post(predict))
        .route("/api/runs/{name}/files/{file}", get(file))
        // A sweep's trials are runs too, under their sweep.
        .route("/api/sweeps", get(sweeps))
        .route("/api/sweeps/{sweep}", get(sweep_detail))
        .route("/api/sweeps/{sweep}/runs/{name}", get(run_detail))
        .route("/api/sweeps/{sweep}/runs/{name}/predict", post(predict))
        .route("/api/sweeps/{sweep}/runs/{name}/files/{file}", get(file))
        .fallback(not_found)
        .method_not_allowed_fallback(not_allowed)
        .with_state(ctx)
        .layer(axum::middleware::from_fn_with_state(Arc::new(hosts), guard))
}

async fn page() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn style_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

async fn runs(State(ctx): State<Arc<Ctx>>) -> Response {
    blocking(ctx, |app| app.runs().map(json)).await
}

async fn sweeps(State(ctx): State<Arc<Ctx>>) -> Response {
    blocking(ctx, |app| app.sweeps().map(json)).await
}

async fn sweep_detail(
    State(ctx): State<Arc<Ctx>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return error(400, "not a sweep name");
    };
    blocking(ctx, move |app| app.sweep_detail(&name).map(json)).await
}

async fn run_detail(
    State(ctx): State<Arc<Ctx>>,
    at: Result<Path<RunAt>, PathRejection>,
) -> Response {
    let Ok(Path(at)) = at else {
        return error(400, "not a run name");
    };
    blocking(ctx, move |app| app.run_detail(&at).map(json)).await
}

/// A run's file, as its route names it.
#[derive(serde::Deserialize)]
struct FileAt {
    #[serde(default)]
    sweep: Option<String>,
    name: String,
    file: String,
}

async fn file(State(ctx): State<Arc<Ctx>>, names: Result<Path<FileAt>, PathRejection>) -> Response {
    let Ok(Path(FileAt { sweep, name, file })) = names else {
        return error(400, "not a run or file name");
    };
    blocking(ctx, move |app| {
        let (body, content_type) = app.file(&RunAt { sweep, name }, &file)?;
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    })
    .await
}

async fn predict(
    State(ctx): State<Arc<Ctx>>,
    at: Result<Path<RunAt>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Path(at)) = at else {
        return error(400, "not a run name");
    };
    let checkpoint = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("checkpoint="))
            .map(String::from)
    });
    let media = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    let png = media.starts_with("image/png");
    if !png && !media.starts_with("application/json") {
        return error(
            415,
            "send application/json ({\"pixels\": […]}) or image/png",
        );
    }
    let body = match read_body(&headers, body).await {
        Ok(body) => body,
        Err(refused) => return closing(error(refused.status, &refused.message)),
    };
    // A picture waits for a decoding slot: its header is read within the decode, under the
    // same limits (the semaphore is never closed).
    let permit = match png {
        true => ctx.decodes.acquire().await.ok(),
        false => None,
    };
    let answer = blocking(ctx.clone(), move |app| {
        let picture = match png {
            true => Picture::Png(&body),
            false => Picture::Json(&body),
        };
        app.predict(&at, checkpoint.as_deref(), picture).map(json)
    })
    .await;
    drop(permit);
    answer
}

/// The body, at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`]; else why not (the body is
/// then not read to its end, so the connection is closed after the answer).
async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::new(413, format!("the body is over {} MiB", MAX_BODY >> 20));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // hyper has checked the length is a number (400 otherwise, or when two disagree).
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| ApiError::new(400, format!("the body could not be read: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > MAX_BODY {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            let secs = BODY_TIMEOUT.as_secs();
            Err(ApiError::new(
                408,
                format!("the body did not arrive within {secs} s"),
            ))
        })
}

/// An unknown address: for the API, the error as JSON; for a browser, the page (which says
/// there is no such page), still with 404.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" {
        return error(404, &format!("{}: no such page", uri.path()));
    }
    let mut response = asset(INDEX_HTML, "text/html; charset=utf-8");
    *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
    response
}

async fn not_allowed(method: Method, uri: Uri) -> Response {
    error(405, &format!("{method} {}: method not allowed", uri.path()))
}

/// Runs `work` on a blocking thread: the answer, or the error as JSON with paths relative to
/// the artifact directory.
async fn blocking(
    ctx: Arc<Ctx>,
    work: impl FnOnce(&App) -> Result<Response, ApiError> + Send + 'static,
) -> Response {
    let app = ctx.clone();
    let done = tokio::task::spawn_blocking(move || work(&app.app)).await;
    match done {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => error(e.status, &ctx.app.relative(&e.message)),
        // It panicked: that request fails, the server goes on.
        Err(_) => error(500, "the server failed on this request"),
    }
}

/// `response`, and the connection closed after it: the body was not read to its end.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn json(value: serde_json::Value) -> Response {
    json_body(value.to_string())
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
