//! Bad input tried from outside (issue 14, point 5). HTTP/1.1 request smuggling forms sent raw
//! over TCP, HTTP/2 rapid reset and CONTINUATION floods on the TLS listener, oversized headers
//! and callback queries, hostile providers (50 MB answers, answers dripped byte by byte, claims
//! nested 10,000 deep) and config files of garbage. Each one gets a clear 4xx, a closed
//! connection or a clear log line: never a 5xx, a panic or a hang; and after each the gateway
//! answers a normal request within a few seconds.

use crate::common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::ca::TestCa;
use common::{raw, Browser, Env, Options};
use devprovider::{Misbehaviour, NESTED_CLAIM_DEPTH};
use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How long a normal request may take after an attack.
const AFTER_ATTACK: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------------------------

/// The gateway process is alive, logged no panic, and answers a normal request on a public
/// route in time.
async fn assert_still_serving(env: &mut Env) {
    assert!(
        env.gateway.child.try_wait().unwrap().is_none(),
        "the gateway exited:\n{}",
        env.gateway.logs()
    );
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let started = Instant::now();
    let r = tokio::time::timeout(AFTER_ATTACK, raw::get(&addr, "/public/after", &[]))
        .await
        .unwrap_or_else(|_| panic!("no answer to a normal request within {AFTER_ATTACK:?}"));
    assert_eq!(r.status, 200, "a normal request after the attack: {r:?}");
    assert!(started.elapsed() < AFTER_ATTACK);
    assert_no_panic(&env.gateway);
}

fn assert_no_panic(gw: &common::Gateway) {
    let logs = gw.logs();
    assert!(
        !logs.contains("panicked"),
        "the gateway panicked:\n{}",
        tail(&logs)
    );
}

/// The end of a long log, for failure messages.
fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(8000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The resident memory of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A recording upstream: parses what the gateway forwards (strictly: CRLF, Content-Length or
// chunked) and keeps every request head and every byte, so a test can see whether a second,
// smuggled request ever reached it.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Forwarded {
    head: String,
    /// The decoded body; `None` while (or if) it never arrived whole.
    body: Option<Vec<u8>>,
}

impl Forwarded {
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

#[derive(Default)]
struct Recorded {
    requests: Vec<Forwarded>,
    raw: Vec<u8>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn requests(&self) -> Vec<Forwarded> {
        self.lock().requests.clone()
    }
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.lock().raw).into_owned()
    }
    fn clear(&self) {
        let mut r = self.lock();
        r.requests.clear();
        r.raw.clear();
    }
}

async fn recording_upstream() -> (String, Recorder) {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rec = Recorder::default();
    let r = rec.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve_recorded(conn, r.clone()));
        }
    });
    (addr, rec)
}

/// Reads more bytes into `buf` (and the record); false at EOF or error.
async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>, rec: &Recorder) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            rec.lock().raw.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One CRLF-terminated line off the front of `buf`.
async fn take_line(conn: &mut TcpStream, buf: &mut Vec<u8>, rec: &Recorder) -> Option<String> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Some(line);
        }
        if !read_more(conn, buf, rec).await {
            return None;
        }
    }
}

async fn take_exact(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    rec: &Recorder,
    n: usize,
) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !read_more(conn, buf, rec).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

async fn serve_recorded(mut conn: TcpStream, rec: Recorder) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut conn, &mut buf, &rec).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let index = {
            let mut r = rec.lock();
            r.requests.push(Forwarded {
                head: head.clone(),
                body: None,
            });
            r.requests.len() - 1
        };
        let seen = rec.lock().requests[index].clone();
        let chunked = seen
            .header_values("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let Some(line) = take_line(&mut conn, &mut buf, &rec).await else {
                    return;
                };
                let size = line.split(';').next().unwrap_or_default().trim();
                let Ok(size) = usize::from_str_radix(size, 16) else {
                    return; // not chunked as we know it: close
                };
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        match take_line(&mut conn, &mut buf, &rec).await {
                            Some(l) if l.is_empty() => break,
                            Some(_) => {}
                            None => return,
                        }
                    }
                    break body;
                }
                let Some(data) = take_exact(&mut conn, &mut buf, &rec, size + 2).await else {
                    return;
                };
                body.extend_from_slice(&data[..size]);
            }
        } else {
            let lengths = seen.header_values("content-length");
            let n = match lengths.as_slice() {
                [] => 0,
                [one] => match one.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => return,
                },
                _ => return, // ambiguous: a strict server closes
            };
            let Some(body) = take_exact(&mut conn, &mut buf, &rec, n).await else {
                return;
            };
            body
        };
        rec.lock().requests[index].body = Some(body);
        let resp =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nupstream";
        if conn.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A gateway whose routes both lead to a recording upstream: `/public` without login, `/`
/// (so `/secret`) only with a session. A smuggled `GET /secret` that reached the upstream would
/// have passed the gateway's checks unseen.
async fn smuggling_env() -> (Env, Recorder) {
    let (upstream, rec) = recording_upstream().await;
    let env = Env::with(Options {
        routes: format!(
            r#"
[[route]]
name = "public"
path = "/public"
upstream = "http://{upstream}"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "http://{upstream}"
"#
        ),
        ..Default::default()
    })
    .await;
    (env, rec)
}

/// What a raw HTTP/1.1 client saw.
#[derive(Debug)]
struct Outcome {
    /// Every status line's code, in order.
    statuses: Vec<u16>,
    /// The gateway closed (or reset) the connection; false: it kept it open, silent.
    closed: bool,
    text: String,
}

/// Sends `bytes` on a fresh connection and reads until the gateway closes it or stays silent
/// for `idle`.
async fn attack_with(addr: &str, bytes: &[u8], idle: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The gateway may close before it has read everything: that is not the test's failure.
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    let closed = loop {
        assert!(Instant::now() < deadline, "the gateway kept talking");
        match tokio::time::timeout(idle, s.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    let statuses = text
        .match_indices("HTTP/1.")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .filter_map(|(i, _)| text[i..].split(' ').nth(1)?.get(..3)?.parse().ok())
        .collect();
    Outcome {
        statuses,
        closed,
        text,
    }
}

async fn attack(addr: &str, bytes: &[u8]) -> Outcome {
    attack_with(addr, bytes, Duration::from_secs(3)).await
}

/// The gateway answered 400 and closed the connection, and nothing reached the upstream.
fn assert_refused(case: &str, out: &Outcome, rec: &Recorder) {
    assert_eq!(out.statuses, vec![400], "{case}: {out:#?}");
    assert!(out.closed, "{case}: the connection stayed open: {out:#?}");
    let seen = rec.requests();
    let raw = rec.raw();
    assert!(
        seen.is_empty() && raw.is_empty(),
        "{case}: the upstream received {seen:#?}\nraw: {raw:?}"
    );
}

/// Whatever the gateway did, the upstream never parsed a request for `/secret`, got at most one
/// request, and never got ambiguous framing (Content-Length with Transfer-Encoding, or two
/// Content-Lengths) or a bare LF in a head. (The smuggled text may arrive as the data of a
/// properly chunked body: that is what the client sent, framed so no server misreads it.)
fn assert_nothing_smuggled(case: &str, rec: &Recorder) {
    let seen = rec.requests();
    assert!(
        seen.len() <= 1,
        "{case}: the upstream received {} requests: {seen:#?}\nraw: {:?}",
        seen.len(),
        rec.raw()
    );
    for f in &seen {
        assert!(
            !f.target().contains("secret"),
            "{case}: a smuggled request reached the upstream: {seen:#?}"
        );
        let cl = f.header_values("content-length");
        let te = f.header_values("transfer-encoding");
        assert!(
            cl.len() <= 1 && (cl.is_empty() || te.is_empty()),
            "{case}: ambiguous framing forwarded: {f:#?}"
        );
        assert!(
            !f.head.replace("\r\n", "").contains('\n'),
            "{case}: a bare LF forwarded: {f:?}"
        );
    }
}

const SMUGGLED: &str = "GET /secret HTTP/1.1\r\nHost: internal\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 request smuggling
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_never_smuggles_a_request() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    // CL.TE: under Content-Length the smuggled request is body; under chunked it follows.
    let cl_te_body = format!("0\r\n\r\n{SMUGGLED}");
    // TE.CL: under chunked the smuggled request is one chunk of data; under Content-Length: 4
    // it follows the body.
    let te_cl_body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let cases = [
        (
            "CL.TE",
            format!(
                "POST /public/cl-te HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            ),
        ),
        (
            "TE.CL",
            format!(
                "POST /public/te-cl HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{te_cl_body}"
            ),
        ),
        (
            "TE with a space before the colon",
            format!(
                "POST /public/te-space HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nTransfer-Encoding : chunked\r\n\r\n{cl_te_body}",
                cl_te_body.len()
            ),
        ),
    ];
    for (case, request) in cases {
        rec.clear();
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}; upstream saw {:?}", rec.requests());
        // Refused, or answered once (as chunked, RFC 9112 §6.3) and then closed: the bytes
        // after the chunked body must never be read as a request on that connection.
        assert!(!out.statuses.iter().any(|s| *s >= 500), "{case}: {out:#?}");
        assert!(out.statuses.len() <= 1, "{case}: {out:#?}");
        assert!(out.closed, "{case}: the connection stayed open: {out:#?}");
        if out.statuses != [400] {
            assert_eq!(out.statuses, vec![200], "{case}: {out:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_nothing_smuggled(case, &rec);
    }
    rec.clear();
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_content_lengths_that_differ_get_400() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let body = format!("hello{SMUGGLED}");
    let cases = [
        (
            "two header lines",
            format!(
                "POST /public/dup HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "one comma-separated list",
            format!(
                "POST /public/dup HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5, {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "a signed value",
            format!(
                "POST /public/dup HTTP/1.1\r\nHost: {addr}\r\nContent-Length: +5\r\n\r\n{body}"
            ),
        ),
    ];
    for (case, request) in cases {
        rec.clear();
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_refused(case, &out, &rec);
    }
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_continuation_lines_get_400() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let cases = [
        (
            "a folded value",
            format!("GET /public/fold HTTP/1.1\r\nHost: {addr}\r\nX-Folded: a\r\n b\r\n\r\n"),
        ),
        (
            "a folded Transfer-Encoding",
            format!(
                "POST /public/fold HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "a Transfer-Encoding value on the next line",
            format!(
                "POST /public/fold HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n{body}",
                body.len()
            ),
        ),
    ];
    for (case, request) in cases {
        rec.clear();
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_refused(case, &out, &rec);
    }
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_line_endings_never_reach_the_upstream_or_smuggle() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let cases = [
        (
            "a whole head in bare LFs",
            format!("GET /public/lf HTTP/1.1\nHost: {addr}\nX-A: 1\n\n"),
        ),
        (
            "a bare LF between two headers",
            format!(
                "POST /public/lf HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\nTransfer-Encoding: chunked\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "a head ended by CR LF LF, then a second request",
            format!("GET /public/lf HTTP/1.1\r\nHost: {addr}\r\n\n{SMUGGLED}"),
        ),
        (
            "a bare CR inside a header line",
            format!("GET /public/lf HTTP/1.1\r\nHost: {addr}\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n"),
        ),
    ];
    for (case, request) in cases {
        rec.clear();
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}; upstream saw {:?}", rec.requests());
        // RFC 9112 §2.2 lets a server read a bare LF as a line end; it must then forward clean
        // CRLF framing. What it may never do: a 5xx, or a request the upstream sees that the
        // gateway did not check.
        assert!(!out.statuses.iter().any(|s| *s >= 500), "{case}: {out:#?}");
        assert!(
            !out.statuses.is_empty() || out.closed,
            "{case}: no answer and the connection left open: {out:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_nothing_smuggled(case, &rec);
    }
    rec.clear();
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_are_refused_without_a_5xx() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let cases = [
        ("a non-hex size", "zz\r\nhello\r\n0\r\n\r\n".to_owned()),
        (
            "a size overflowing 64 bits",
            format!("ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a size of 2^64 - 1",
            format!("ffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a negative size",
            format!("-5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a 0x prefix",
            format!("0x5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a size with trailing junk",
            format!("5 junk\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    for (case, body) in cases {
        rec.clear();
        let request = format!(
            "POST /public/chunks HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}; upstream saw {:?}", rec.requests());
        // The head may already be on its way upstream when the body turns out broken: then the
        // body never completes there, and the client gets a 4xx (or a closed connection).
        assert!(
            out.statuses.iter().all(|s| (400..500).contains(s)),
            "{case}: {out:#?}"
        );
        assert!(out.statuses.len() <= 1, "{case}: {out:#?}");
        assert!(out.closed, "{case}: the connection stayed open: {out:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_nothing_smuggled(case, &rec);
        assert!(
            rec.requests().iter().all(|f| f.body.is_none()),
            "{case}: the upstream got a whole body: {:#?}",
            rec.requests()
        );
    }
    rec.clear();
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_that_does_not_end_in_chunked_gets_400() {
    let (mut env, rec) = smuggling_env().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let te = |lines: &str| {
        format!(
            "POST /public/te HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n{lines}\r\n{body}",
            body.len()
        )
    };
    let cases = [
        ("gzip", te("Transfer-Encoding: gzip\r\n")),
        ("chunked, gzip", te("Transfer-Encoding: chunked, gzip\r\n")),
        ("xchunked", te("Transfer-Encoding: xchunked\r\n")),
        ("chunkedx", te("Transfer-Encoding: chunkedx\r\n")),
        ("identity", te("Transfer-Encoding: identity\r\n")),
        (
            "chunked, then gzip in a second line",
            te("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
        ),
        ("gzip without Content-Length", {
            format!(
                "POST /public/te HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: gzip\r\n\r\n{body}"
            )
        }),
        ("chunked over HTTP/1.0", {
            format!(
                "POST /public/te HTTP/1.0\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
        }),
    ];
    for (case, request) in cases {
        rec.clear();
        let out = attack(&addr, request.as_bytes()).await;
        eprintln!("{case}: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_refused(case, &out, &rec);
    }
    assert_still_serving(&mut env).await;
}

// ---------------------------------------------------------------------------------------------
// Oversized requests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_request_headers_get_a_4xx() {
    let mut env = Env::start().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let mut request = format!("GET /public/many HTTP/1.1\r\nHost: {addr}\r\n");
    for i in 0..10_000 {
        request.push_str(&format!("X-H-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let out = attack(&addr, request.as_bytes()).await;
    eprintln!("10,000 headers: {out:?}");
    assert_eq!(out.statuses.len(), 1, "{out:#?}");
    assert!(
        matches!(out.statuses[0], 400 | 431),
        "10,000 headers: {out:#?}"
    );
    assert!(out.closed, "{out:#?}");
    // The same count of headers, each tiny, but within the byte limit: still refused cleanly.
    let mut request = format!("GET /public/many HTTP/1.1\r\nHost: {addr}\r\n");
    for _ in 0..10_000 {
        request.push_str("a:\r\n");
    }
    request.push_str("\r\n");
    let out = attack(&addr, request.as_bytes()).await;
    eprintln!("10,000 empty headers: {out:?}");
    assert_eq!(out.statuses.len(), 1, "{out:#?}");
    assert!(matches!(out.statuses[0], 400 | 431), "{out:#?}");
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_cookie_gets_431() {
    let mut env = Env::start().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    // Just under pingora's own 1 MiB head cap: the gateway's limit (32 KiB) decides.
    let cookie = format!("oidc_session={}", "A".repeat(1_000_000));
    let request = format!(
        "GET /app HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nCookie: {cookie}\r\n\r\n"
    );
    let started = Instant::now();
    let out = attack(&addr, request.as_bytes()).await;
    eprintln!("1 MB cookie: {:?} {:?}", out.statuses, out.closed);
    assert_eq!(
        out.statuses,
        vec![431],
        "{}",
        &out.text[..out.text.len().min(2000)]
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // Beyond pingora's cap too: refused before anything parses it.
    let cookie = format!("a={}", "B".repeat(2_000_000));
    let request = format!("GET /app HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    let out = attack(&addr, request.as_bytes()).await;
    eprintln!("2 MB cookie: {:?} {:?}", out.statuses, out.closed);
    assert!(
        out.statuses.is_empty() && out.closed || matches!(out.statuses[..], [400] | [431]),
        "{}",
        &out.text[..out.text.len().min(2000)]
    );
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_100_kb_of_query_gets_a_4xx() {
    let mut env = Env::start().await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let big = "x".repeat(100 * 1024);
    // Under the 64 KiB that a URI may have in pingora (`http::Uri`), so the gateway's own
    // callback handling, not the HTTP parser, has to refuse it.
    let sixty = "x".repeat(60 * 1024);
    // With a real login state cookie, so the gateway would otherwise go on to the token call.
    let mut b = Browser::new();
    let first = b.get(&env.url("/")).await;
    let state = common::query_param(&first.location(), "state").unwrap();
    let cookie = b.cookie_header();
    for (case, target) in [
        (
            "a 100 KB code",
            format!("/oauth2/callback?code={big}&state={state}"),
        ),
        (
            "a 60 KB code",
            format!("/oauth2/callback?code={sixty}&state={state}"),
        ),
        (
            "a 60 KB state",
            format!("/oauth2/callback?code=c&state={sixty}"),
        ),
        (
            "a 100 KB state",
            format!("/oauth2/callback?code=c&state={big}"),
        ),
        (
            "100 KB of extra parameters",
            format!(
                "/oauth2/callback?code=c&state={state}&{}",
                (0..10_000)
                    .map(|i| format!("p{i}=1"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
        ),
        (
            "a 100 KB error_description",
            format!("/oauth2/callback?error=access_denied&error_description={big}&state={state}"),
        ),
    ] {
        let started = Instant::now();
        let r = raw::get(
            &addr,
            &target,
            &[("accept", "text/html"), ("cookie", &cookie)],
        )
        .await;
        eprintln!("{case}: {:?} {}", r.head, &r.body[..r.body.len().min(200)]);
        assert!(
            (400..500).contains(&r.status),
            "{case}: {} {:?}",
            r.status,
            &r.body[..r.body.len().min(2000)]
        );
        assert!(
            !r.body.contains(&sixty[..1000]),
            "{case}: the page echoes the query"
        );
        assert!(started.elapsed() < Duration::from_secs(15));
    }
    assert_still_serving(&mut env).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 on the TLS listener
// ---------------------------------------------------------------------------------------------

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn tls_env(ca: &TestCa) -> Env {
    let cert = ca.server_cert();
    Env::with(Options {
        https: true,
        server_extra: "tls_cert_file = \"server.pem\"\ntls_key_file = \"server.key\"".into(),
        files: vec![
            ("server.pem".into(), cert.cert_pem.into_bytes()),
            ("server.key".into(), cert.key_pem.into_bytes()),
        ],
        ..Default::default()
    })
    .await
}

/// A TLS connection to `addr` that negotiated h2, with the client preface and an empty
/// SETTINGS frame already sent.
async fn h2_connect(
    addr: &str,
    ca: &TestCa,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&frame(FRAME_SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    tls
}

const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1) after the bits in `first`.
fn hpack_int(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2).
fn hpack_literal(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// The header block of `GET path` at `authority` over https.
fn hpack_get(authority: &str, path: &str) -> Vec<u8> {
    // :method GET (static 2), :scheme https (static 7).
    let mut out = vec![0x82, 0x87];
    // :path and :authority: literals without indexing, indexed names 4 and 1.
    hpack_int(0x00, 4, 4, &mut out);
    hpack_int(0, 7, path.len(), &mut out);
    out.extend_from_slice(path.as_bytes());
    hpack_int(0x00, 4, 1, &mut out);
    hpack_int(0, 7, authority.len(), &mut out);
    out.extend_from_slice(authority.as_bytes());
    out
}

/// What the gateway sent on an HTTP/2 connection.
#[derive(Debug, Default)]
struct H2Seen {
    /// The error code of a GOAWAY, if one came.
    goaway: Option<u32>,
    /// HEADERS frames (responses) received.
    responses: usize,
    rst_streams: usize,
    /// The connection ended (EOF or error) within the deadline.
    closed: bool,
}

/// Reads frames until the connection ends or `deadline` passes; sets `goaway_seen` when a
/// GOAWAY arrives, so that the writer can stop.
async fn h2_read(
    mut r: impl AsyncRead + Unpin,
    deadline: Duration,
    goaway_seen: Arc<std::sync::atomic::AtomicBool>,
) -> H2Seen {
    let mut seen = H2Seen::default();
    let until = Instant::now() + deadline;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, r.read(&mut chunk)).await {
            Err(_) => return seen,
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let payload = &buf[9..9 + len];
            match kind {
                FRAME_HEADERS => seen.responses += 1,
                FRAME_RST_STREAM => seen.rst_streams += 1,
                FRAME_GOAWAY if payload.len() >= 8 => {
                    seen.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                    goaway_seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {}
            }
            buf.drain(..9 + len);
        }
    }
}

/// A normal HTTP/2 request after an attack: 200 within [`AFTER_ATTACK`].
async fn assert_h2_still_serving(env: &mut Env, ca: &TestCa) {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(AFTER_ATTACK)
        .build()
        .unwrap();
    let r = client.get(env.url("/public/after")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        env.gateway.child.try_wait().unwrap().is_none(),
        "the gateway exited"
    );
    assert_no_panic(&env.gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_gets_the_connection_closed() {
    let ca = TestCa::new("hostile test CA");
    let mut env = tls_env(&ca).await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let rss_before = rss_kib(env.gateway.child.id());
    let tls = h2_connect(&addr, &ca).await;
    let (r, mut w) = tokio::io::split(tls);
    let goaway = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn(h2_read(r, Duration::from_secs(30), goaway.clone()));
    w.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
        .await
        .unwrap();
    // 10,000 streams, each opened (a whole GET to a route that needs a session, answered by
    // the gateway itself) and at once cancelled; sent in batches of 500.
    let block = hpack_get(&addr, "/rapid-reset");
    let started = Instant::now();
    let mut sent = 0;
    'outer: for batch in 0..20u32 {
        let mut bytes = Vec::new();
        for i in 0..500u32 {
            let stream = 2 * (batch * 500 + i) + 1;
            bytes.extend(frame(
                FRAME_HEADERS,
                FLAG_END_STREAM | FLAG_END_HEADERS,
                stream,
                &block,
            ));
            bytes.extend(frame(FRAME_RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        if w.write_all(&bytes).await.is_err() || goaway.load(std::sync::atomic::Ordering::Relaxed) {
            break 'outer;
        }
        sent += 500;
    }
    let seen = reader.await.unwrap();
    let took = started.elapsed();
    eprintln!("rapid reset: sent {sent} streams (+ a batch) in {took:?}: {seen:?}");
    assert!(
        seen.goaway.is_some() || seen.closed,
        "the gateway kept the abusive connection open: {seen:?}"
    );
    assert!(seen.closed, "the connection was not closed: {seen:?}");
    // ENHANCE_YOUR_CALM (0xb) is what h2 says to a rapid reset.
    assert_eq!(seen.goaway, Some(0xb), "{seen:?}");
    assert!(
        seen.responses < 10_000,
        "every reset stream was served: {seen:?}"
    );
    assert!(took < Duration::from_secs(30));
    let rss_after = rss_kib(env.gateway.child.id());
    eprintln!("gateway RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_h2_still_serving(&mut env, &ca).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_floods_get_the_connection_closed() {
    let ca = TestCa::new("hostile test CA");
    let mut env = tls_env(&ca).await;
    let addr = format!("127.0.0.1:{}", env.gateway.port);
    let rss_before = rss_kib(env.gateway.child.id());
    // Frames of 1000-byte header fields, then empty frames: endless CONTINUATION either way.
    let mut big = Vec::new();
    hpack_literal("x-flood", &"a".repeat(1000), &mut big);
    for (case, fragment) in [("1 KB fragments", big), ("empty fragments", Vec::new())] {
        let tls = h2_connect(&addr, &ca).await;
        let (r, mut w) = tokio::io::split(tls);
        let goaway = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = tokio::spawn(h2_read(r, Duration::from_secs(30), goaway.clone()));
        w.write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
            .await
            .unwrap();
        // HEADERS without END_HEADERS...
        w.write_all(&frame(
            FRAME_HEADERS,
            FLAG_END_STREAM,
            1,
            &hpack_get(&addr, "/public/flood"),
        ))
        .await
        .unwrap();
        // ...and CONTINUATION frames that never end the block, up to 64 MB or a million frames.
        let one = frame(FRAME_CONTINUATION, 0, 1, &fragment);
        let per_write = (64 * 1024 / one.len()).max(1);
        let batch: Vec<u8> = one.repeat(per_write);
        let started = Instant::now();
        let mut frames = 0usize;
        let mut bytes = 0usize;
        let stopped = loop {
            if goaway.load(std::sync::atomic::Ordering::Relaxed) {
                break "goaway";
            }
            if frames >= 1_000_000 || bytes >= 64 * 1024 * 1024 {
                break "cap";
            }
            if started.elapsed() > Duration::from_secs(30) {
                break "time";
            }
            match tokio::time::timeout(Duration::from_secs(10), w.write_all(&batch)).await {
                Ok(Ok(())) => {
                    frames += per_write;
                    bytes += batch.len();
                }
                Ok(Err(_)) => break "write error",
                Err(_) => break "write stalled",
            }
        };
        let seen = reader.await.unwrap();
        eprintln!(
            "CONTINUATION flood ({case}): {frames} frames, {bytes} bytes, stopped by {stopped} after {:?}: {seen:?}",
            started.elapsed()
        );
        assert!(
            matches!(stopped, "goaway" | "write error"),
            "{case}: the gateway kept reading the flood ({stopped}, {frames} frames, {bytes} bytes): {seen:?}"
        );
        assert!(
            seen.closed,
            "{case}: the connection was not closed: {seen:?}"
        );
        assert!(seen.goaway.is_some(), "{case}: no GOAWAY: {seen:?}");
        assert_eq!(seen.responses, 0, "{case}: {seen:?}");
        assert!(
            bytes < 16 * 1024 * 1024,
            "{case}: {bytes} bytes were taken before the gateway stopped"
        );
    }
    let rss_after = rss_kib(env.gateway.child.id());
    eprintln!("gateway RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_h2_still_serving(&mut env, &ca).await;
}

// ---------------------------------------------------------------------------------------------
// Hostile providers
// ---------------------------------------------------------------------------------------------

/// How a hostile provider misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostility {
    /// Discovery declares and streams 50 MB.
    HugeDiscovery,
    /// Discovery is fine; the JWKS is 50 MB without a Content-Length.
    HugeJwks,
    /// Discovery comes one byte every 100 ms.
    DripDiscovery,
    /// Discovery and JWKS are fine; the token endpoint drips one byte every 100 ms.
    DripToken,
}

const FIFTY_MB: usize = 50 * 1024 * 1024;

/// A provider on loopback that misbehaves as told; serves discovery at the issuer's
/// well-known path, `/jwks`, `/authorize` (never reached by the gateway) and `/token`.
async fn hostile_provider(how: Hostility) -> String {
    let listener = tokio::net::TcpListener::bind(common::any_loopback())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let issuer = format!("http://{addr}");
    let key = jwk::generate(jwk::JwkAlg::ES256).unwrap();
    let jwks = jwk::public_jwks(key.public_jwk).to_string();
    let discovery = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let jwks = jwks.clone();
            let discovery = discovery.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let json = |body: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let ok = match (how, path.as_str()) {
                    (Hostility::HugeDiscovery, "/.well-known/openid-configuration") => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {FIFTY_MB}\r\nconnection: close\r\n\r\n"
                        );
                        stream_junk(&mut conn, head, FIFTY_MB).await
                    }
                    (Hostility::HugeJwks, "/jwks") => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{\"keys\":[".to_owned();
                        stream_junk(&mut conn, head, FIFTY_MB).await
                    }
                    (Hostility::DripDiscovery, "/.well-known/openid-configuration") => {
                        drip(&mut conn, json(&discovery)).await
                    }
                    (Hostility::DripToken, p) if p.starts_with("/token") => {
                        drip(
                            &mut conn,
                            json(r#"{"access_token":"a","token_type":"Bearer","id_token":"x.y.z"}"#),
                        )
                        .await
                    }
                    (_, "/.well-known/openid-configuration") => {
                        conn.write_all(json(&discovery).as_bytes()).await.is_ok()
                    }
                    (_, "/jwks") => conn.write_all(json(&jwks).as_bytes()).await.is_ok(),
                    _ => conn
                        .write_all(
                            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await
                        .is_ok(),
                };
                if ok {
                    let _ = conn.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Writes `head` then `size` bytes of spaces, stopping when the reader goes away.
async fn stream_junk(conn: &mut TcpStream, head: String, size: usize) -> bool {
    if conn.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < size {
        if conn.write_all(&chunk).await.is_err() {
            return false;
        }
        sent += chunk.len();
    }
    true
}

/// Writes `text` one byte every 100 ms, stopping when the reader goes away.
async fn drip(conn: &mut TcpStream, text: String) -> bool {
    for b in text.bytes() {
        if conn.write_all(&[b]).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// A gateway whose only provider is at `provider` (an http loopback issuer), `timeout = "2s"`,
/// in front of an echo upstream; returned once `/healthz` answers.
struct HostileEnv {
    gateway: common::Gateway,
    _echo: devprovider::EchoServer,
    _dir: tempfile::TempDir,
}

async fn hostile_env(provider: &str) -> HostileEnv {
    let dir = tempfile::tempdir().unwrap();
    let echo = devprovider::start_echo(common::any_loopback())
        .await
        .unwrap();
    let port = common::free_port();
    let admin_port = common::free_port();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
threads = 2

[admin]
listen = "127.0.0.1:{admin_port}"

[session]
keys = ["{key}"]

[providers.hostile]
issuer = "http://{provider}"
client_id = "gateway"
client_secret = "s"
timeout = "2s"

[[route]]
name = "public"
path = "/public"
upstream = "{echo}"
auth = "public"

[[route]]
name = "app"
path = "/"
upstream = "{echo}"
"#,
        key = oidc_gateway::keygen::cookie_key(),
        echo = echo.base_url(),
    );
    let dir_path = dir.path().to_owned();
    let gateway = tokio::task::spawn_blocking(move || {
        common::spawn_gateway(&dir_path, &text, port, admin_port, false)
    })
    .await
    .unwrap();
    HostileEnv {
        gateway,
        _echo: echo,
        _dir: dir,
    }
}

async fn readyz(gw: &common::Gateway) -> u16 {
    reqwest::get(format!("{}/readyz", gw.admin))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A login attempt gets 503 with Retry-After (the provider has not loaded: sending the browser
/// there would only end in a failed callback), and the public route still works.
async fn assert_logins_get_503(gw: &common::Gateway) {
    let mut b = Browser::new();
    let started = Instant::now();
    let r = b.get(&format!("{}/app", gw.base)).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a login started although the provider is not loaded (/readyz 503): {}",
        r.location()
    );
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = b.get(&format!("{}/public/x", gw.base)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_discovery_document_is_refused_with_a_clear_log_line() {
    let provider = hostile_provider(Hostility::HugeDiscovery).await;
    let mut env = hostile_env(&provider).await;
    let gw = &env.gateway;
    let found = common::eventually(Duration::from_secs(15), async || {
        gw.logs().contains(
            "discovery endpoint answer is larger than 1048576 bytes (providers.*.max_response_bytes)",
        )
    })
    .await;
    assert!(found, "{}", tail(&gw.logs()));
    assert_eq!(readyz(gw).await, 503);
    assert_logins_get_503(gw).await;
    assert!(env.gateway.child.try_wait().unwrap().is_none());
    assert!(rss_kib(env.gateway.child.id()) < 512 * 1024);
    assert_no_panic(&env.gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_jwks_is_refused_with_a_clear_log_line() {
    let provider = hostile_provider(Hostility::HugeJwks).await;
    let mut env = hostile_env(&provider).await;
    let gw = &env.gateway;
    let found = common::eventually(Duration::from_secs(15), async || {
        gw.logs().contains(
            "jwks endpoint answer is larger than 1048576 bytes (providers.*.max_response_bytes)",
        )
    })
    .await;
    assert!(found, "{}", tail(&gw.logs()));
    assert_eq!(readyz(gw).await, 503);
    assert_logins_get_503(gw).await;
    assert!(env.gateway.child.try_wait().unwrap().is_none());
    assert!(rss_kib(env.gateway.child.id()) < 512 * 1024);
    assert_no_panic(&env.gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_dripping_discovery_byte_by_byte_times_out() {
    let provider = hostile_provider(Hostility::DripDiscovery).await;
    let mut env = hostile_env(&provider).await;
    let gw = &env.gateway;
    // `timeout = "2s"` covers the whole answer, not each read.
    let found = common::eventually(Duration::from_secs(15), async || {
        let logs = gw.logs();
        logs.contains("discovery endpoint unreachable: timed out")
            || logs.contains("provider did not answer at start")
    })
    .await;
    assert!(found, "{}", tail(&gw.logs()));
    for line in gw
        .logs()
        .lines()
        .filter(|l| l.contains("discovery endpoint"))
    {
        eprintln!("dripping discovery logged: {line}");
    }
    assert_eq!(readyz(gw).await, 503);
    assert_logins_get_503(gw).await;
    assert!(env.gateway.child.try_wait().unwrap().is_none());
    assert_no_panic(&env.gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_dripping_byte_by_byte_gives_503_with_retry_after() {
    let provider = hostile_provider(Hostility::DripToken).await;
    let env = hostile_env(&provider).await;
    let gw = &env.gateway;
    let ready = common::eventually(Duration::from_secs(15), async || readyz(gw).await == 200).await;
    assert!(ready, "{}", tail(&gw.logs()));
    let mut b = Browser::new();
    let first = b.get(&format!("{}/app", gw.base)).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.body);
    let state = common::query_param(&first.location(), "state").unwrap();
    let started = Instant::now();
    let r = b
        .get(&format!("{}/oauth2/callback?code=c&state={state}", gw.base))
        .await;
    let took = started.elapsed();
    eprintln!("dripping token endpoint: {} after {took:?}", r.status);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // The provider timeout (2 s) bounds the whole answer, not each byte of it.
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        gw.logs().contains("token endpoint unreachable"),
        "{}",
        tail(&gw.logs())
    );
    assert_no_panic(gw);
}

// ---------------------------------------------------------------------------------------------
// Claims nested 10,000 deep
// ---------------------------------------------------------------------------------------------

/// A login whose ID token or UserInfo carries a claim nested 10,000 deep fails with the 401
/// login-failed page (or succeeds with the claim ignored), never a 5xx; the next login works.
async fn deep_claims_login(m: Misbehaviour, provider_extra: &str) {
    let mut env = Env::with(Options {
        provider_extra: provider_extra.into(),
        ..Default::default()
    })
    .await;
    env.provider().controls.set_misbehaviour(Some(m));
    let mut b = Browser::new();
    let first = b.get(&env.url("/app")).await;
    let back = b.through_provider(&first, "alice").await;
    eprintln!("{m:?}: callback answered {}", back.status);
    assert!(
        back.status == StatusCode::UNAUTHORIZED || back.status == StatusCode::FOUND,
        "{m:?}: {} {}",
        back.status,
        back.body
    );
    if back.status == StatusCode::UNAUTHORIZED {
        assert!(back.body.contains("Sign in again"), "{}", back.body);
        assert!(b.session_cookie_names().is_empty());
    } else {
        let r = b.get(&back.location()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(NESTED_CLAIM_DEPTH, 10_000);
    env.provider().controls.set_misbehaviour(None);
    let mut b = Browser::new();
    let r = b.login(&env.url("/app"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_still_serving(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_claim_nested_10000_deep_fails_the_login_cleanly() {
    deep_claims_login(Misbehaviour::DeeplyNestedIdTokenClaim, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_userinfo_claim_nested_10000_deep_fails_the_login_cleanly() {
    deep_claims_login(Misbehaviour::DeeplyNestedUserinfoClaim, "userinfo = true").await;
}

// ---------------------------------------------------------------------------------------------
// Garbage config files
// ---------------------------------------------------------------------------------------------

/// Bytes from a fixed xorshift sequence (the same every run).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `check --config FILE` with `content`: exits 1 (not by a signal or a panic) with a clear,
/// bounded message, in bounded time.
fn assert_check_refuses(case: &str, content: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, content).unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "{case}: exit {:?} after {took:?}, {} bytes of stderr, {} of stdout: {}",
        out.status,
        stderr.len(),
        stdout.len(),
        &stderr[..stderr.len().min(300)]
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{case}: {:?}\n{}",
        out.status,
        tail(&stderr)
    );
    assert!(!stderr.contains("panicked"), "{case}: {}", tail(&stderr));
    assert!(!stderr.trim().is_empty(), "{case}: no message");
    // Every problem is printed (the contract), but no line of it is a dump: a message that
    // echoes a 10 MB value is no clear message (nor welcome in a journal).
    let longest = stderr.lines().chain(stdout.lines()).map(str::len).max();
    assert!(
        longest.unwrap_or(0) <= 4096,
        "{case}: a {}-byte line is no clear message: {:?}...",
        longest.unwrap_or(0),
        &stderr[..stderr.len().min(300)]
    );
    assert!(took < Duration::from_secs(60), "{case}: took {took:?}");
    stderr
}

#[test]
fn check_refuses_a_config_of_random_bytes() {
    let mut bytes = noise(64 * 1024, 0x9e37_79b9_7f4a_7c15);
    // Certainly not UTF-8.
    bytes[0] = 0xff;
    let stderr = assert_check_refuses("random bytes", &bytes);
    assert!(
        stderr.contains("gateway.toml"),
        "the message names the file: {stderr}"
    );
}

#[test]
fn check_refuses_a_config_of_utf8_garbage() {
    const ALPHABET: &[&str] = &[
        "[",
        "]",
        "[[",
        "]]",
        "=",
        "\"",
        "'",
        "\"\"\"",
        "{",
        "}",
        ",",
        ".",
        "\n",
        "\r\n",
        "\t",
        " ",
        "#",
        "\\",
        "\\u",
        "é",
        "日本",
        "🦀",
        "\u{202e}",
        "\u{0}",
        "\u{7f}",
        "0x",
        "1e999",
        "inf",
        "nan",
        "true",
        "server",
        "listen",
        "route",
        "${",
        "}",
        "_file",
        "-",
        "+",
        "1979-05-27T07:32:00Z",
        "key",
    ];
    let mut text = String::new();
    for b in noise(32 * 1024, 0x2545_f491_4f6c_dd1d) {
        text.push_str(ALPHABET[b as usize % ALPHABET.len()]);
    }
    assert_check_refuses("UTF-8 garbage", text.as_bytes());
    // Garbage inside a well-formed file: every value of the wrong type.
    let typed = r#"
[server]
listen = 8080
public_url = ["x"]
threads = "many"
[session]
keys = "not-a-list"
idle_timeout = -1
[providers.x]
issuer = { a = 1 }
client_id = 1979-05-27T07:32:00Z
[[route]]
path = 1e999
upstream = true
"#;
    assert_check_refuses("mistyped values", typed.as_bytes());
}

#[test]
fn check_refuses_configs_nested_100000_deep() {
    // Arrays and inline tables nested 100,000 deep: a parser that recursed would overflow.
    let depth = 100_000;
    let text = format!("x = {}{}\n", "[".repeat(depth), "]".repeat(depth));
    assert_check_refuses("arrays nested 100,000 deep", text.as_bytes());
    let text = format!("x = {}1{}\n", "{a = ".repeat(depth), "}".repeat(depth));
    assert_check_refuses("inline tables nested 100,000 deep", text.as_bytes());
}

#[test]
fn check_refuses_a_huge_config() {
    // 10 MB: a valid start, then ~100,000 unknown keys (each one reported).
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://a.example\"\n[session]\nkeys = [\"x\"]\n",
    );
    let filler = "y".repeat(90);
    let mut i = 0;
    while text.len() < 10 * 1024 * 1024 {
        text.push_str(&format!("unknown_{i} = \"{filler}\"\n"));
        i += 1;
    }
    assert_check_refuses("10 MB of unknown keys", text.as_bytes());
    // A 10 MB string where an address belongs.
    let text = format!("[server]\nlisten = \"{}\"\n", "9".repeat(10 * 1024 * 1024));
    assert_check_refuses("a 10 MB value", text.as_bytes());
}
