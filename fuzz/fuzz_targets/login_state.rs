//! The per-login state cookie: `{cookie_name}_login_{id}` found for the callback's `state`,
//! opened, deserialised and checked (state, expiry); and `start`, which reads every login
//! cookie a request carries to drop the oldest.
//!
//! Input, by lines: the callback's `state`; `now` in Unix milliseconds; other `Cookie` header
//! text; then the cookie's content: bytes sealed under the state's cookie name (a login state
//! as JSON), or after `raw:` the cookie value as sent.
//!
//! Invariants: a found login state is for this `state` and unexpired at `now`; sealed again by
//! `start` it is found again, equal; every `Set-Cookie` is a valid header value; `start` keeps
//! at most `max_login_states` logins.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidc_gateway::session::login_state::{self, LoginState, LOGIN_STATE_TTL_SECS};
use oidc_gateway::session::RequestCookies;
use oidc_gateway_fuzz::{assert_header_value, cookie_header, FIXTURE};

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let cfg = &f.config.session;
    let mut lines = data.splitn(4, |&b| b == b'\n');
    let state = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let now_ms: u64 = std::str::from_utf8(lines.next().unwrap_or_default())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_790_000_000_000);
    let extra = lines.next().unwrap_or_default();
    let content = lines.next().unwrap_or_default();
    let name = login_state::cookie_name(cfg, &state);
    let value = match content.strip_prefix(b"raw:") {
        Some(raw) => String::from_utf8_lossy(raw).into_owned(),
        None => f.codec.seal(&name, content),
    };
    let mut header = extra.to_vec();
    header.extend_from_slice(format!("; {name}={value}").as_bytes());
    // What reaches the gateway is an `http::HeaderValue` (no CR, LF, NUL or other controls).
    if http::HeaderValue::from_bytes(&header).is_err() {
        return;
    }
    let jar = RequestCookies::parse(
        std::iter::once(header.as_slice()),
        &cfg.cookie_name,
        cfg.max_chunks,
    );

    // `start` with whatever login cookies the request carries.
    let fresh = LoginState {
        state: "fresh-state".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        return_to: "/".into(),
        provider: "cis2".into(),
        created_ms: now_ms,
        acr: vec!["AAL3_ANY".into()],
        max_age: Some(900),
    };
    let set = login_state::start(cfg, &f.codec, &fresh, &jar, now_ms);
    for s in &set {
        assert_header_value(s.as_bytes(), "Set-Cookie");
    }
    let deleted: Vec<String> = set
        .iter()
        .filter_map(|s| cookie::Cookie::parse(s.as_str()).ok())
        .filter(|c| c.value().is_empty())
        .map(|c| c.name().to_owned())
        .collect();
    let mut survivors: Vec<&str> = jar
        .login
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !deleted.iter().any(|d| d == n))
        .collect();
    survivors.sort_unstable();
    survivors.dedup();
    assert!(
        survivors.len() < cfg.max_login_states.max(1),
        "start keeps {} earlier logins besides the new one, max_login_states is {}",
        survivors.len(),
        cfg.max_login_states
    );

    let Ok(login) = login_state::find(cfg, &f.codec, &jar, &state, now_ms) else {
        return;
    };
    assert_eq!(login.state, state, "a login state found for another state");
    assert!(
        now_ms < login.created_ms.saturating_add(LOGIN_STATE_TTL_SECS * 1000),
        "an expired login state was accepted"
    );
    let _ = format!("{login:?}");
    let set = login_state::start(cfg, &f.codec, &login, &RequestCookies::default(), now_ms);
    for s in &set {
        assert_header_value(s.as_bytes(), "Set-Cookie");
    }
    let again = cookie_header(&set);
    let jar2 = RequestCookies::parse(
        std::iter::once(again.as_bytes()),
        &cfg.cookie_name,
        cfg.max_chunks,
    );
    let found = login_state::find(cfg, &f.codec, &jar2, &state, now_ms)
        .expect("a re-sealed login state is found again");
    assert!(found == login, "re-sealed login state differs");
});
