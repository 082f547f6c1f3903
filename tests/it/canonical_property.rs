//! Property of the canonicaliser: for generated paths mixing escapes, dot segments,
//! `;parameters`, slashes and case, either the gateway refuses the request, or the route it
//! chooses for the canonical path is the route that every reading of what it forwards would
//! choose: as sent and percent-decoded (Go, WSGI, Rails, nginx), parameters dropped then
//! decoded (Tomcat, Jetty, Spring), decoded then parameters dropped, and with case folded where
//! matching ignores case (IIS).

use std::sync::{Arc, LazyLock};

use oidc_gateway::config::parse_str;
use oidc_gateway::paths::{canonicalize, covers};
use oidc_gateway::routing::RouteTable;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const PREFIXES: [&str; 7] = [
    "/",
    "/public",
    "/ra",
    "/ra/admin",
    "/Api",
    "/@admin",
    "/caf\u{e9}",
];

/// The route prefixes of a table: with case folded, `check` refuses non-ASCII ones.
fn prefixes(fold_case: bool) -> impl Iterator<Item = &'static str> {
    PREFIXES
        .into_iter()
        .filter(move |p| !fold_case || p.is_ascii())
}

static EXACT: LazyLock<RouteTable> = LazyLock::new(|| table(false));
static FOLDED: LazyLock<RouteTable> = LazyLock::new(|| table(true));

fn table(fold_case: bool) -> RouteTable {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"http://127.0.0.1:8080\"\n",
    );
    if fold_case {
        text.push_str("case_insensitive_paths = true\n");
    }
    text.push_str(
        "[session]\nkeys = [\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n\
         [providers.p]\nissuer = \"http://127.0.0.1:9000\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    );
    for p in prefixes(fold_case) {
        text.push_str(&format!(
            "[[route]]\nname = \"{p}\"\npath = \"{p}\"\nupstream = \"http://127.0.0.1:3000\"\n"
        ));
    }
    let config = parse_str(&text, None).expect("valid test config");
    RouteTable::new(config.routes.iter().map(Arc::clone).collect(), fold_case)
}

/// How a plain upstream router resolves a path it has already decoded as it likes: dot
/// segments removed, empty segments merged, longest whole-segment prefix.
fn upstream_route(path: &str, fold_case: bool) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut resolved = format!("/{}", segments.join("/"));
    if fold_case {
        resolved.make_ascii_lowercase();
    }
    prefixes(fold_case)
        .filter(|p| {
            let p = if fold_case {
                p.to_ascii_lowercase()
            } else {
                p.to_string()
            };
            covers(&p, &resolved)
        })
        .max_by_key(|p| p.len())
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn decode(path: &str) -> String {
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

fn drop_params(path: &str) -> String {
    path.split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// The readings of a forwarded path. A reader that keeps `;parameters` in segment names (Go,
/// WSGI) sees `ra;x` as a name no route prefix has, and one that does not decode sees `%40`
/// as another name than `@`: either can only pick a less specific resource than the gateway
/// checked, so those readings are compared on paths without parameters or escapes.
fn readings(forwarded: &str) -> Vec<(&'static str, String)> {
    let mut all = vec![
        (
            "parameters dropped, then decoded",
            decode(&drop_params(forwarded)),
        ),
        (
            "decoded, then parameters dropped",
            drop_params(&decode(forwarded)),
        ),
    ];
    if !forwarded.contains(';') {
        all.push(("decoded", decode(forwarded)));
    }
    if !forwarded.contains('%') {
        all.push(("parameters dropped", drop_params(forwarded)));
        if !forwarded.contains(';') {
            all.push(("as sent", forwarded.to_owned()));
        }
    }
    all
}

/// Path pieces: mostly ones that survive canonicalisation (so the property has something to
/// compare), some that must be refused.
fn piece() -> impl Strategy<Value = &'static str> {
    let kept = prop::sample::select(vec![
        "ra",
        "RA",
        "Ra",
        "public",
        "admin",
        "ADMIN",
        "api",
        "Api",
        "x",
        "%72a",
        "%72%61",
        "%52A",
        "r%61",
        "%61dmin",
        "@",
        "%40",
        "caf",
        "%C3%A9",
        "\u{e9}",
        "%c3%a9",
        "%C3%89",
        ":",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        ".%2E",
        "",
        ";",
        ";p=1",
        ";jsessionid=AB",
        "%25",
        "%252e%252e",
        "%20",
        "~",
        "%7E",
        "%7e",
        "%C3%A9",
        "%c3%a9",
    ]);
    let refused = prop::sample::select(vec![
        "..;", ".;x", "%2e%2e;", "%3B", "%3b", "%2F", "%2f", "%5C", "%00", "%0a", "\\", "%zz", "%",
    ]);
    prop_oneof![12 => kept, 1 => refused]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::collection::vec(piece(), 1..4),
            prop::sample::select(vec!["/", "//"]),
        ),
        0..6,
    )
    .prop_map(|segments| {
        let mut p = String::from("/");
        for (parts, sep) in segments {
            p.push_str(&parts.concat());
            p.push_str(sep);
        }
        p
    })
}

fn check(p: &str, fold_case: bool, routes: &RouteTable) -> Result<(), TestCaseError> {
    let Ok(canonical) = canonicalize(p, fold_case) else {
        return Ok(()); // refused with 400: nothing reaches an upstream
    };
    let chosen = routes
        .match_route(None, &canonical.matched)
        .map(|r| r.path.clone())
        .unwrap_or_default();
    // A canonical path is a fixed point.
    let again = canonicalize(&canonical.forwarded, fold_case).expect("canonical is accepted");
    prop_assert_eq!(&again.forwarded, &canonical.forwarded, "input {:?}", p);
    prop_assert_eq!(&again.matched, &canonical.matched, "input {:?}", p);
    for (how, reading) in readings(&canonical.forwarded) {
        let theirs = upstream_route(&reading, fold_case);
        prop_assert_eq!(
            &theirs,
            &chosen,
            "input {:?} forwarded as {:?}, read {} as {:?}",
            p,
            canonical.forwarded,
            how,
            reading
        );
    }
    Ok(())
}

proptest! {
    // Failures are kept next to this file (canonical_property.proptest-regressions) and replayed
    // first: the default looks for them beside the test binary's main.rs instead.
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_reading_of_a_forwarded_path_chooses_the_gateways_route(p in path()) {
        check(&p, false, &EXACT)?;
    }

    #[test]
    fn with_case_folded_every_reading_chooses_the_gateways_route(p in path()) {
        check(&p, true, &FOLDED)?;
    }
}

/// The cases the property once found, pinned: path parameters on the segment a route matches.
#[test]
fn the_cases_the_property_found_stay_fixed() {
    for p in ["/Api;/", "/%72a;/"] {
        check(p, false, &EXACT).unwrap_or_else(|e| panic!("{p}: {e}"));
        check(p, true, &FOLDED).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

#[test]
fn most_generated_paths_are_accepted_so_the_property_compares_something() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut accepted = 0;
    for _ in 0..1000 {
        let p = path().new_tree(&mut runner).unwrap().current();
        accepted += usize::from(canonicalize(&p, false).is_ok());
    }
    assert!(
        accepted > 400,
        "only {accepted} of 1000 generated paths were accepted"
    );
}

#[test]
fn the_known_walk_arounds_are_refused_or_routed_to_ra() {
    let routes = &*EXACT;
    for p in ["/%72a/", "/ra;x/", "/public/%2e%2e/ra/", "/x/.%2E/ra"] {
        let c = canonicalize(p, false).unwrap();
        assert_eq!(
            routes.match_route(None, &c.matched).unwrap().path,
            "/ra",
            "{p}"
        );
    }
    for p in [
        "/public/..;/ra/",
        "/public/%2e%2e;/ra/",
        "/ra%2Fx",
        "/ra%3Bx/",
    ] {
        assert!(canonicalize(p, false).is_err(), "{p}");
    }
}
