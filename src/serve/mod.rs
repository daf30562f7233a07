//! `serve`: one local web page over the recorded runs: the runs table, their curves overlaid,
//! each run's history, config and pictures, and a drawing pad that `predict`s what you draw with
//! any of its checkpoints.
//!
//! It sits on top of inspection: the page's numbers are those `runs`, `inspect` and `predict`
//! compute, served as JSON ([`api`]) to plain HTML, CSS and JavaScript compiled into the binary
//! ([`routes`]), so the page works offline. The HTTP server is `tiny_http`: synchronous, small,
//! with a few worker threads taking requests from one queue.

mod api;
mod routes;

use crate::inspection::ComputeOn;
use std::path::PathBuf;
use std::sync::Arc;

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
    let server = tiny_http::Server::http(&addr).map_err(|e| ServeError::Bind {
        addr: addr.clone(),
        message: e.to_string(),
    })?;
    let url = match server.server_addr().to_ip() {
        Some(bound) if bound.is_ipv6() => format!("http://[{}]:{}/", bound.ip(), bound.port()),
        Some(bound) => format!("http://{bound}/"),
        None => format!("http://{addr}/"),
    };
    exit_on_ctrl_c();
    println!("Serving {url}");
    let server = Arc::new(server);
    let app = Arc::new(api::App::new(options.artifact_dir.clone(), options.on));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (server, app) = (server.clone(), app.clone());
            std::thread::spawn(move || {
                // `recv` fails only when the server is shut down.
                while let Ok(request) = server.recv() {
                    routes::answer(&app, request);
                }
            })
        })
        .collect();
    for worker in workers {
        // A worker that panicked has already said so on stderr; the others keep serving.
        let _ = worker.join();
    }
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
