//! Requests with an exact request target. reqwest (like every URL library) resolves dot
//! segments and `%2e%2e` before sending, so path-confusion tests write the request line
//! themselves over a plain TCP connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    /// Status line and headers, shown when a test fails (`{:?}`).
    #[allow(dead_code)]
    pub head: String,
    pub body: String,
}

impl RawResp {
    /// The path the echo upstream saw (it answers JSON with `path`).
    pub fn upstream_path(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not the echo upstream's JSON ({e}): {self:?}"));
        v["path"].as_str().unwrap_or_default().to_owned()
    }
}

/// `GET target` to `addr` (`host:port`) with `headers`, `Connection: close`.
pub async fn get(addr: &str, target: &str, headers: &[(&str, &str)]) -> RawResp {
    request(addr, "GET", target, headers).await
}

/// One request with an exact request target; the connection is closed after the response.
/// `Host` is the address unless `headers` name one.
pub async fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> RawResp {
    let mut head = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    let mut has_accept = false;
    let mut has_host = false;
    for (k, v) in headers {
        has_accept |= k.eq_ignore_ascii_case("accept");
        has_host |= k.eq_ignore_ascii_case("host");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_host {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has_accept {
        head.push_str("Accept: application/json\r\n");
    }
    head.push_str("\r\n");
    exchange(addr, &head).await
}

/// Sends `text` as it is (a whole request head) and reads the response until the peer closes.
pub async fn exchange(addr: &str, text: &str) -> RawResp {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    RawResp {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
