//! Claim paths (dotted and RFC 9535 JSONPath) evaluated over hostile claims, the claims kept in
//! a session, `require` rules, and the identity header values rendered from them.
//!
//! Input: claim paths, one per line, then an empty line, then the claims as JSON (an object;
//! any other JSON value is put under the key `v`).
//!
//! Invariants: a rendered header value never holds CR, LF, NUL, another C0 control or DEL
//! (TAB is kept, as the header contract says) and is a valid `http::HeaderValue`; a path looked
//! up in the kept claims gives what it evaluates to over the full claims (so the request path
//! sees what the login saw); `sub` is always kept.
#![no_main]

use http::HeaderName;
use libfuzzer_sys::fuzz_target;
use oidc_gateway::authz::first_unmet;
use oidc_gateway::claims::{retain_for, ClaimPath, Claims};
use oidc_gateway::config::{HeaderRule, Requirement};
use oidc_gateway::identity;
use oidc_gateway_fuzz::assert_header_value;
use serde_json::Value;

fn check_rendered(bytes: &[u8]) {
    assert!(
        !bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
        "rendered header holds a control character: {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_header_value(bytes, "identity header");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (paths_text, json) = text.split_once("\n\n").unwrap_or((text, "{}"));
    let full: Claims = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            let mut m = Claims::new();
            m.insert("v".into(), other);
            m
        }
        Err(_) => return,
    };
    let paths: Vec<ClaimPath> = paths_text
        .lines()
        .take(16)
        .filter_map(|l| ClaimPath::parse(l).ok())
        .collect();
    let full_value = Value::Object(full.clone());
    let kept = retain_for(&full, &paths);
    if full.contains_key("sub") {
        assert_eq!(kept.get("sub"), full.get("sub"), "sub was not kept");
    }
    for p in &paths {
        let _ = p.text();
        let evaluated = p.evaluate(&full_value).filter(|v| !v.is_null());
        let looked_up = p.lookup(&kept);
        assert_eq!(
            looked_up,
            evaluated.as_ref(),
            "{:?} looked up in kept claims differs from its evaluation",
            p.text()
        );
        if let Some(v) = looked_up {
            let mut out = Vec::new();
            identity::render(v, &mut out);
            check_rendered(&out);
        }
    }
    // Whole values rendered, whatever their shape.
    let mut out = Vec::new();
    identity::render(&full_value, &mut out);
    check_rendered(&out);

    let rules = vec![
        HeaderRule {
            name: HeaderName::from_static("x-auth-fuzz"),
            display: "X-Auth-Fuzz".into(),
            spelling: "X-Auth-Fuzz".into(),
            paths: paths.clone(),
        },
        HeaderRule {
            name: HeaderName::from_static("x-auth-sub"),
            display: "X-Auth-Sub".into(),
            spelling: "X-Auth-Sub".into(),
            paths: ClaimPath::parse("sub").into_iter().collect(),
        },
    ];
    for (_, value) in identity::headers(&rules, &kept) {
        check_rendered(&value);
    }
    let require: Vec<Requirement> = paths
        .iter()
        .map(|p| Requirement {
            path: p.clone(),
            values: vec!["B0008".into(), "Q14".into(), "1".into(), "true".into()],
        })
        .collect();
    let _ = first_unmet(&require, &kept);
});
