//! `serve`: one local web page over the recorded runs: the runs table, their curves overlaid,
//! each run's history, config and pictures, and a drawing pad that `predict`s what you draw with
//! any of its checkpoints.
//!
//! It sits on top of inspection: the page's numbers are those `runs`, `inspect` and `predict`
//! compute, served as JSON ([`api`]) to plain HTML, CSS and JavaScript compiled into the binary
//! ([`routes`]), so the page works offline. The HTTP server ([`http`]) is a small synchronous
//! one: a few worker threads take connections from one queue.

mod api;
mod http;
mod routes;

use crate::inspection::ComputeOn;
use std::path::PathBuf;

/// Requests served at once: predicts take milliseconds, so a few threads keep up with a page
/// drawing and many clients at once (more wait in the queue, none is refused).
const WORKERS: usize = 8;

/// What `serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub artifact_dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// Where predictions compute (`--backend`, `--device`), as for `predict`.
    pub on: ComputeOn,
}

/// Why the server could not start. Requests never fail the server: each gets its own answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
}

/// Serves until the process is stopped: prints `Serving http://HOST:PORT/` first, then answers
/// requests on [`WORKERS`] threads. Ctrl-C exits with 130, as it does outside training.
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let addr = format!("{}:{}", options.host, options.port);
    let bind_error = |e: std::io::Error| ServeError::Bind {
        addr: addr.clone(),
        message: e.to_string(),
    };
    let listener = std::net::TcpListener::bind(&addr).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let url = if bound.is_ipv6() {
        format!("http://[{}]:{}/", bound.ip(), bound.port())
    } else {
        format!("http://{bound}/")
    };
    exit_on_ctrl_c();
    println!("Serving {url}");
    let app = api::App::new(options.artifact_dir.clone(), options.on);
    http::serve(listener, WORKERS, move |request| {
        routes::answer(&app, request)
    });
    Ok(())
}

/// Ctrl-C (and SIGTERM, SIGHUP) ends the process with 130, as `train` does when no training is
/// running: the server writes nothing, so there is nothing to finish.
fn exit_on_ctrl_c() {
    if let Err(e) =
        ctrlc::set_handler(|| std::process::exit(i32::from(crate::training::INTERRUPTED)))
    {
        log::warn!("Ctrl-C will kill the server without exit code 130: {e}");
    }
}
