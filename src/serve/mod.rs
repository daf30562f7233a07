//! `serve`: one local web page over the recorded runs: the runs table, their curves overlaid,
//! each run's history, config and pictures, and a drawing pad that `predict`s what you draw with
//! any of its checkpoints; and the sweeps, each a sortable table of its trials (ordinary runs,
//! with their own pages) with the chosen trials' curves overlaid.
//!
//! It sits on top of inspection: the page's numbers are those `runs`, `inspect` and `predict`
//! compute, served as JSON ([`api`], [`sweeps`]) to plain HTML, CSS and JavaScript compiled into the binary
//! ([`routes`]), so the page works offline. HTTP is hyper's, routed by axum, on tokio
//! ([`server`]); every request passes the browser protections of [`guard`], and run files are
//! read only through [`files`]. docs/serve.md, "Security", lists what is refused and the limits.

mod api;
mod files;
mod guard;
mod json;
mod routes;
mod server;
mod sweeps;

use crate::inspection::ComputeOn;
use std::path::PathBuf;
use std::time::Duration;

/// Threads serving connections: the requests' work runs on blocking threads, so these only
/// move bytes.
const ASYNC_WORKERS: usize = 2;
/// Threads doing the requests' work (reading runs, decoding pictures, predicting) at most at
/// once; more requests wait their turn. Decodes are further bounded by `routes::DECODES_AT_ONCE`.
const BLOCKING_THREADS: usize = 8;
/// A blocking thread idle this long ends.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// What `serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub artifact_dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// Further names the server answers to (`--allow-host`), besides localhost, 127.0.0.1,
    /// [::1] and the address bound.
    pub allow_hosts: Vec<String>,
    /// Where predictions compute (`--backend`, `--device`), as for `predict`.
    pub on: ComputeOn,
}

/// Why the server could not start. Requests never fail the server: each gets its own answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
    #[error("cannot start the server's threads: {0}")]
    Runtime(std::io::Error),
}

/// Serves until the process is stopped: prints `Serving http://HOST:PORT/` first (after a
/// warning on stderr when the address is not loopback). Ctrl-C exits with 130, as it does
/// outside training.
pub fn serve(options: &ServeOptions) -> Result<(), ServeError> {
    let addr = format!("{}:{}", options.host, options.port);
    let bind_error = |e: std::io::Error| ServeError::Bind {
        addr: addr.clone(),
        message: e.to_string(),
    };
    let listener = std::net::TcpListener::bind(&addr).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let loopback = guard::is_loopback(bound.ip());
    if !loopback {
        eprintln!(
            "warning: serving on {} without authentication: anyone who can reach this address \
             can read every run (configs, histories, paths) and predict",
            bound.ip()
        );
    }
    let url = if bound.is_ipv6() {
        format!("http://[{}]:{}/", bound.ip(), bound.port())
    } else {
        format!("http://{bound}/")
    };
    listener.set_nonblocking(true).map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ASYNC_WORKERS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_io()
        .enable_time()
        .build()
        .map_err(ServeError::Runtime)?;
    println!("Serving {url}");
    let app = api::App::new(&options.artifact_dir, options.on);
    let router = routes::router(app, guard::Hosts::new(bound.ip(), &options.allow_hosts));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
        server::run(listener, router).await;
        Ok(())
    })
}
