//! The session cookie decoder: `Cookie` headers → the gateway's cookies → chunks joined →
//! base64url → AES-GCM open → JSON → `Session`.
//!
//! Input: `Cookie` header values, one per line (a forged cookie never opens, so this covers
//! the header, chunk and envelope checks); or `sealed:` followed by bytes the fuzzer wants
//! sealed with the gateway's key, sent as a bare cookie or as chunks (what a provider's hostile
//! claims become after login: this covers the deserialiser and everything after it).
//!
//! Invariant: a cookie that opens re-seals (`write_session`) to cookies that open to an equal
//! session;
//! every `Set-Cookie` is a valid header value under 4096 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidc_gateway::session::cookies::{self, write_session, CHUNK_BYTES};
use oidc_gateway::session::RequestCookies;
use oidc_gateway_fuzz::{assert_header_value, cookie_header, FIXTURE, NOW};

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let cfg = &f.config.session;
    let header: Vec<u8> = match data.strip_prefix(b"sealed:") {
        Some(plain) => {
            let sealed = f.codec.seal(&cfg.cookie_name, plain);
            if plain.first() == Some(&b'[') || sealed.len() > CHUNK_BYTES {
                // Chunks, sent in reverse: the decoder orders them.
                let parts: Vec<String> = sealed
                    .as_bytes()
                    .chunks(CHUNK_BYTES.min(sealed.len() / 2 + 1))
                    .enumerate()
                    .map(|(i, c)| format!("{}_{i}={}", cfg.cookie_name, String::from_utf8_lossy(c)))
                    .rev()
                    .collect();
                format!("app=1; {}", parts.join("; ")).into_bytes()
            } else {
                format!("app=1; {}={sealed}", cfg.cookie_name).into_bytes()
            }
        }
        None => data.to_vec(),
    };
    // Each line is one `Cookie` header; what reaches the gateway is an `http::HeaderValue`.
    let jar = RequestCookies::parse(
        header
            .split(|&b| b == b'\n')
            .filter(|h| http::HeaderValue::from_bytes(h).is_ok()),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    assert!(
        jar.chunks.len() <= cfg.max_chunks,
        "more chunks kept than allowed"
    );
    let Ok(sealed) = jar.sealed() else { return };
    let Ok(session) = cookies::open(cfg, &f.codec, &sealed) else {
        return;
    };
    // What the request path does with an opened session.
    let _ = session.expired_at(cfg, NOW);
    let _ = session.needs_touch(cfg, NOW);
    let _ = session.subject();
    let _ = format!("{session:?}");

    let now = session.last_seen;
    let Ok(set) = write_session(cfg, &f.codec, &session, &jar, now) else {
        return; // too large for max_chunks: refused, not truncated
    };
    for s in &set {
        assert_header_value(s.as_bytes(), "Set-Cookie");
        assert!(s.len() < 4096, "a Set-Cookie of {} bytes", s.len());
    }
    let again = cookie_header(&set);
    let jar2 = RequestCookies::parse(
        std::iter::once(again.as_bytes()),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    let reopened = jar2
        .session(cfg, &f.codec)
        .expect("a re-sealed session opens again");
    // serde_json's `float_roundtrip` (on in Cargo.toml) keeps non-integer numbers exact
    // (fuzz/regressions/session_cookie: they drifted by an ULP per re-seal without it).
    assert!(
        reopened == session,
        "re-sealed session differs: {session:?} vs {reopened:?}"
    );
});
