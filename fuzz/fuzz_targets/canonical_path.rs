//! Path canonicalisation (`paths::canonicalize`) and route matching (`routing`): the request
//! path the rules are checked against and the path the upstream receives; the `Host` reading.
//!
//! Input: a `Host` value on the first line (empty: none), the request path on the rest.
//!
//! Invariants, with and without case folding:
//! - a canonical path is a fixed point: canonicalising `forwarded` again gives the same
//!   `forwarded` and `matched`, hence the same route (for every host);
//! - `matched` never holds `//`, a dot segment, `;`, a control character or a non-ASCII byte,
//!   and the upstream path (after `strip_prefix`) starts with `/`;
//! - a path that parses as an `http` URI path stays one after canonicalisation;
//! - refusals are consistent: folding case only adds refusals (never accepts what the
//!   case-sensitive reading refuses), and refuses the same paths on every call;
//! - folded `matched` is the case-sensitive `matched` in lower case;
//! - a refused `Host` stays refused; an accepted one names the start of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oidc_gateway::paths::{canonicalize, CanonicalPath};
use oidc_gateway::routing::{host_name, upstream_path, RouteTable};
use oidc_gateway_fuzz::FIXTURE;

fn check_form(c: &CanonicalPath, fold: bool) {
    let m = &c.matched;
    assert!(m.starts_with('/'), "matched {m:?} is not absolute");
    assert!(!m.contains("//"), "matched {m:?} holds an empty segment");
    assert!(m.is_ascii(), "matched {m:?} is not ASCII");
    assert!(!m.contains(';'), "matched {m:?} holds parameters");
    assert!(
        !m.bytes().any(|b| b < 0x21 || b == 0x7f),
        "matched {m:?} holds a control character"
    );
    for seg in m.split('/') {
        assert!(
            seg != "." && seg != "..",
            "matched {m:?} holds a dot segment"
        );
    }
    if fold {
        assert!(
            !m.bytes().any(|b| b.is_ascii_uppercase()),
            "folded matched {m:?} holds upper case"
        );
    }
    assert!(c.forwarded.starts_with('/'), "forwarded {:?}", c.forwarded);
}

fn route_of<'a>(t: &'a RouteTable, host: Option<&str>, matched: &str) -> Option<usize> {
    t.match_route(host, matched).map(|r| r.index)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host_raw, path) = match text.split_once('\n') {
        Some((h, p)) => (Some(h), p),
        None => (None, text),
    };
    let f = &*FIXTURE;

    // Host.
    let host = match host_raw.map(host_name) {
        Some(Ok(h)) => {
            if let Some(name) = h {
                assert!(
                    host_raw.is_some_and(|raw| raw.starts_with(name)),
                    "host {name:?} is not the start of {host_raw:?}"
                );
            }
            h
        }
        Some(Err(e)) => {
            assert_eq!(
                host_raw.map(host_name),
                Some(Err(e)),
                "host refusal changed"
            );
            None
        }
        None => None,
    };

    let plain = canonicalize(path, false);
    let folded = canonicalize(path, true);
    assert_eq!(
        plain,
        canonicalize(path, false),
        "canonicalize is not deterministic"
    );
    if plain.is_err() {
        assert!(
            folded.is_err(),
            "folding case accepts {path:?}, which the case-sensitive reading refuses ({plain:?})"
        );
    }
    // A path as `http` delivers it: parsed whole (no query, no fragment cut off).
    let uri_ok = path
        .parse::<http::uri::PathAndQuery>()
        .is_ok_and(|p| p.as_str() == path && p.query().is_none());
    for (result, fold, table) in [
        (&plain, false, &f.routes),
        (&folded, true, &f.routes_folded),
    ] {
        let Ok(c) = result else { continue };
        check_form(c, fold);
        let again = canonicalize(&c.forwarded, fold).expect("a canonical path is accepted again");
        assert_eq!(&again, c, "canonical form of {path:?} is not a fixed point");
        let m = canonicalize(&c.matched, fold);
        if let Ok(m) = &m {
            assert_eq!(m.matched, c.matched, "matched form is not a fixed point");
        }
        for h in [host, Some("admin.example.org"), None] {
            let r = route_of(table, h, &c.matched);
            assert_eq!(r, route_of(table, h, &again.matched), "route changed");
            if let Some(route) = table.match_route(h, &c.matched) {
                let up = upstream_path(route, c);
                assert!(up.starts_with('/'), "upstream path {up:?} is not absolute");
                if uri_ok {
                    assert!(
                        up.parse::<http::uri::PathAndQuery>().is_ok(),
                        "upstream path {up:?} of {path:?} is not a URI path"
                    );
                }
            }
        }
        if uri_ok {
            assert!(
                c.forwarded.parse::<http::uri::PathAndQuery>().is_ok(),
                "canonical {:?} of URI path {path:?} is not a URI path",
                c.forwarded
            );
        }
    }
    if let (Ok(p), Ok(fo)) = (&plain, &folded) {
        assert_eq!(
            p.forwarded, fo.forwarded,
            "folding changed the forwarded path"
        );
        assert_eq!(
            p.matched.to_ascii_lowercase(),
            fo.matched,
            "folded matched is not the lower case of matched"
        );
    }
});
