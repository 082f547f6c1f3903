//! The callback's and sign-in's query parsing: `state`, `code`, `iss`, `error` and `rd`
//! (`request::query_param`), the refusal of repeated parameters, and the post-login return path
//! (`request::safe_return_path`), which becomes a `Location` on the gateway's origin.
//!
//! Input: a query string (after `?`).
//!
//! Invariants: the return path is `/` or a local path (never `//host`, `/\host`, a scheme or a
//! control character, also after decoding), `public_origin + rd` is a URL on the gateway's
//! own origin and a valid `Location` value; a repeated parameter is reported only when it is
//! one of the names asked about and really repeated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidc_gateway::fuzzing::{query_param, repeated_param, safe_return_path};
use oidc_gateway_fuzz::{assert_header_value, FIXTURE};

const NAMES: &[&str] = &["state", "code", "iss"];

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let f = &*FIXTURE;
    match repeated_param(Some(query), NAMES) {
        Some(name) => {
            assert!(NAMES.contains(&name));
            let n = url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == name)
                .count();
            assert!(n > 1, "{name} reported repeated but sent {n} times");
        }
        None => {
            for name in NAMES {
                assert!(
                    url::form_urlencoded::parse(query.as_bytes())
                        .filter(|(k, _)| k == name)
                        .count()
                        <= 1,
                    "{name} repeated but not reported"
                );
            }
        }
    }
    for name in ["state", "code", "iss", "error", "error_description"] {
        let _ = query_param(Some(query), name);
    }
    let rd = safe_return_path(query_param(Some(query), "rd").as_deref());
    assert!(rd.starts_with('/'), "return path {rd:?} is not a path");
    assert!(
        !rd.starts_with("//") && !rd.starts_with("/\\"),
        "return path {rd:?}"
    );
    assert!(
        !rd.bytes().any(|b| b < 0x20 || b == 0x7f),
        "return path {rd:?} holds a control character"
    );
    let origin = &f.config.server.public_origin;
    let location = format!("{origin}{rd}");
    assert_header_value(location.as_bytes(), "Location");
    let url = url::Url::parse(&location).expect("the return URL parses");
    let base = url::Url::parse(origin).expect("public origin");
    assert_eq!(
        url.origin(),
        base.origin(),
        "return path {rd:?} leaves the gateway's origin"
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "return path {rd:?} adds credentials"
    );
});
