//! The HTTP thread of `--metrics-listen`: tiny_http accepts and parses (on threads of its
//! own, one per connection), this thread answers `GET /metrics` and `GET /health` and
//! nothing else, polling a stop flag between requests.
//!
//! tiny_http sets no limit on the size of a request's headers: expose the port only to
//! the monitoring host (loopback or a firewall), as with any exporter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::anyhow;
use tiny_http::{Header, Method, Request, Response, Server};

use super::{Sources, render, verdict};
use crate::unix_now;

/// How often the thread looks at the stop flag while no request comes.
const POLL: Duration = Duration::from_millis(200);
/// The content type of the Prometheus text format.
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running metrics endpoint; [`MetricsServer::stop`] stops it.
#[derive(Debug)]
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `listen` and starts serving `sources`.
    ///
    /// # Errors
    /// When the address cannot be bound (the message names `--metrics-listen`), or the
    /// thread cannot start.
    pub fn start(listen: SocketAddr, sources: Sources) -> anyhow::Result<Self> {
        let server = Server::http(listen).map_err(|e| {
            anyhow!("--metrics-listen {listen}: cannot listen ({e}); pick a free address and port")
        })?;
        let addr = server.server_addr().to_ip().unwrap_or(listen);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = crate::thread::spawn("metrics", move || {
            serve(&server, &sources, &flag);
            Ok(())
        })?;
        log::info!("metrics: GET /metrics and /health on http://{addr}");
        Ok(Self { stop, thread, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread (within [`POLL`]) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Answers requests until `stop` is set.
fn serve(server: &Server, sources: &Sources, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => respond(request, sources),
            Ok(None) => {}
            Err(e) => log::warn!("metrics: cannot receive a request: {e}"),
        }
    }
}

fn respond(request: Request, sources: &Sources) {
    let (status, body) = route(request.method(), request.url(), sources);
    let mut response = Response::from_string(body).with_status_code(status);
    if let Ok(header) = Header::from_bytes(&b"Content-Type"[..], TEXT.as_bytes()) {
        response.add_header(header);
    }
    if let Err(e) = request.respond(response) {
        log::debug!("metrics: cannot send the response: {e}");
    }
}

/// The status and body for a request.
fn route(method: &Method, url: &str, sources: &Sources) -> (u16, String) {
    let path = url.split('?').next().unwrap_or(url);
    match (method, path) {
        (Method::Get, "/metrics") => match render(sources) {
            Ok(page) => (200, page),
            Err(e) => (500, format!("cannot encode the metrics: {e}\n")),
        },
        (Method::Get, "/health") => match verdict(&sources.facts(unix_now())) {
            Ok(()) => (200, "ok\n".to_owned()),
            Err(why) => (503, format!("{why}\n")),
        },
        (_, "/metrics" | "/health") => (405, "only GET\n".to_owned()),
        _ => (404, "not found: try /metrics or /health\n".to_owned()),
    }
}
