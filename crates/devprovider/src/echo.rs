//! The echo upstream: answers every method and path with 200 and shows what it received
//! (method, path, query, headers in order) as JSON, or as a small escaped HTML page for browsers.
//! `/slow?ms=N` sleeps first (capped at 10 s), for timeout tests. A path ending in `/cors-open`
//! is answered with `Access-Control-Allow-Origin: *`, as an upstream that allows every origin.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::json;

use super::http::{esc, html_page, json_response, Params};
use super::ShutdownOnDrop;

const SLOW_CAP: Duration = Duration::from_secs(10);

/// A running echo upstream; stops when dropped or on [`EchoServer::shutdown`].
pub struct EchoServer {
    pub addr: SocketAddr,
    shutdown: ShutdownOnDrop,
}

impl EchoServer {
    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }
}

/// Binds `bind` (port 0 allowed) and serves the echo upstream on the current tokio runtime.
pub async fn start_echo(bind: SocketAddr) -> std::io::Result<EchoServer> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(echo);
    let shutdown = ShutdownOnDrop::spawn(listener, app, "echo upstream");
    Ok(EchoServer { addr, shutdown })
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let query = uri.query().unwrap_or_default();
    if uri.path() == "/slow" {
        let ms = Params::parse(query.as_bytes())
            .get("ms")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms).min(SLOW_CAP)).await;
    }
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let rows: String = header_list
            .iter()
            .map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>\n", esc(k), esc(v)))
            .collect();
        let body = format!(
            "<p><code>{} {}</code></p><p>Query: <code>{}</code></p>\
             <h2>Headers</h2><table>\n{rows}</table>",
            esc(method.as_str()),
            esc(uri.path()),
            esc(query),
        );
        return html_page(StatusCode::OK, "Echo upstream", &body);
    }
    let mut resp = json_response(
        StatusCode::OK,
        &json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": query,
            "headers": header_list,
        }),
    );
    if uri.path().ends_with("/cors-open") {
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_static("*"),
        );
    }
    resp
}
