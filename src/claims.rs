//! Claims: the merged JSON object of ID token and UserInfo claims, and claim paths into it.
//!
//! A claim path is either dotted (`org.code`) or, when it starts with `$`, an RFC 9535 JSONPath
//! query. JSONPath is evaluated once per login or refresh ([`retain_for`]) and its result kept in
//! the session under the query's own text, so the request path only does map look-ups.

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

/// The claims a session carries: a JSON object.
pub type Claims = Map<String, Value>;

/// Claims that always come from the ID token, never from UserInfo.
pub const PROTOCOL_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "auth_time",
    "acr",
    "amr",
    "sid",
];

/// A parsed claim path.
#[derive(Debug, Clone)]
pub enum ClaimPath {
    /// `org.code`: object keys, one per segment.
    Dotted { text: String, segments: Vec<String> },
    /// `$...`: a JSONPath query, evaluated at login.
    Query { text: String, query: JsonPath },
}

/// Why a claim path was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimPathError {
    #[error("empty claim path")]
    Empty,
    #[error("claim path {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("invalid JSONPath {0:?}: {1}")]
    JsonPath(String, String),
}

/// Longest JSONPath accepted in a claim path (CIS2's role query is about 80 bytes).
const MAX_JSONPATH_LEN: usize = 1024;
/// Deepest `[` nesting accepted (CIS2's role query needs 1; 4 parses in well under 1 ms).
const MAX_JSONPATH_NESTING: usize = 4;

/// How deep `[` brackets nest in a JSONPath, outside its string literals.
fn bracket_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

impl ClaimPath {
    /// Parses `org.code` or `$.nhsid_nrbac_roles[...]`.
    pub fn parse(text: &str) -> Result<ClaimPath, ClaimPathError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ClaimPathError::Empty);
        }
        if text.starts_with('$') {
            // serde_json_path 0.7.2 panics ("we do not use streaming parsers") on a query that
            // ends inside a `\u` escape (`$['\u`, `$['\uD`); no valid query ends inside a string.
            let open_escape = text.rsplit_once("\\u").is_some_and(|(_, rest)| {
                rest.len() < 4 && rest.bytes().all(|b| b.is_ascii_hexdigit())
            });
            if open_escape {
                return Err(ClaimPathError::JsonPath(
                    text.to_owned(),
                    "unterminated \\u escape".to_owned(),
                ));
            }
            // Its parser backtracks: each nested `[` doubles the time (12 levels 15 ms, 20 levels
            // 32 s, found by fuzzing), so `check` or a reload could hang on one config line.
            if text.len() > MAX_JSONPATH_LEN {
                return Err(ClaimPathError::JsonPath(
                    text.to_owned(),
                    format!("longer than {MAX_JSONPATH_LEN} bytes"),
                ));
            }
            if bracket_depth(text) > MAX_JSONPATH_NESTING {
                return Err(ClaimPathError::JsonPath(
                    text.to_owned(),
                    format!("brackets nested deeper than {MAX_JSONPATH_NESTING}"),
                ));
            }
            return JsonPath::parse(text)
                .map(|query| ClaimPath::Query {
                    text: text.to_owned(),
                    query,
                })
                .map_err(|e| ClaimPathError::JsonPath(text.to_owned(), e.to_string()));
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ClaimPathError::EmptySegment(text.to_owned()));
        }
        Ok(ClaimPath::Dotted {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        match self {
            ClaimPath::Dotted { text, .. } | ClaimPath::Query { text, .. } => text,
        }
    }

    /// The value at this path in claims kept by [`retain_for`]; `None` when missing or null.
    pub fn lookup<'a>(&self, claims: &'a Claims) -> Option<&'a Value> {
        let value = match self {
            ClaimPath::Dotted { segments, .. } => {
                let (first, rest) = segments.split_first()?;
                let mut v = claims.get(first.as_str())?;
                for seg in rest {
                    v = v.as_object()?.get(seg.as_str())?;
                }
                v
            }
            ClaimPath::Query { text, .. } => claims.get(text.as_str())?,
        };
        (!value.is_null()).then_some(value)
    }

    /// Evaluates the path over full claims (at login): one match is that value, several an array.
    pub fn evaluate(&self, claims: &Value) -> Option<Value> {
        match self {
            ClaimPath::Dotted { segments, .. } => {
                let mut v = claims;
                for seg in segments {
                    v = v.as_object()?.get(seg.as_str())?;
                }
                (!v.is_null()).then(|| v.clone())
            }
            ClaimPath::Query { query, .. } => {
                let nodes = query.query(claims).all();
                match nodes.len() {
                    0 => None,
                    1 => Some(nodes[0].clone()),
                    _ => Some(Value::Array(nodes.into_iter().cloned().collect())),
                }
            }
        }
    }
}

/// The claims worth keeping in a session: the top-level claims that dotted paths start from,
/// plus each JSONPath query's result stored under its own text. Keeping only these keeps the
/// session cookie small (NHS tokens are large) and moves JSONPath work off the request path.
pub fn retain_for<'a>(full: &Claims, paths: impl IntoIterator<Item = &'a ClaimPath>) -> Claims {
    let mut keys = BTreeSet::new();
    let mut out = Claims::new();
    let full_value = Value::Object(full.clone());
    for path in paths {
        match path {
            ClaimPath::Dotted { segments, .. } => {
                if let Some(first) = segments.first() {
                    keys.insert(first.as_str());
                }
            }
            ClaimPath::Query { text, .. } => {
                if let Some(v) = path.evaluate(&full_value) {
                    out.insert(text.clone(), v);
                }
            }
        }
    }
    // Always keep the subject (logs, UserInfo and back-channel logout need it) and how and when
    // the user authenticated (`/oauth2/session`, step-up).
    keys.extend(["sub", "acr", "auth_time"]);
    for key in keys {
        if key.starts_with('$') {
            continue;
        }
        if let Some(v) = full.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    out
}

/// Why UserInfo could not be merged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("UserInfo has no sub")]
    MissingSub,
    #[error("UserInfo sub differs from the ID token's")]
    SubMismatch,
}

/// Merges UserInfo claims into ID token claims: UserInfo wins, except for protocol claims, which
/// always come from the ID token. Refuses UserInfo for another subject (OIDC Core §5.3.2).
pub fn merge_userinfo(id_token: &mut Claims, userinfo: Claims) -> Result<(), MergeError> {
    let sub = userinfo
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(MergeError::MissingSub)?;
    if id_token.get("sub").and_then(Value::as_str) != Some(sub) {
        return Err(MergeError::SubMismatch);
    }
    for (k, v) in userinfo {
        if !PROTOCOL_CLAIMS.contains(&k.as_str()) {
            id_token.insert(k, v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => m,
            _ => panic!("test claims must be an object"),
        }
    }

    fn nhs() -> Claims {
        claims(json!({
            "sub": "uid=1",
            "role": {"role_id": "240000115894", "code": "S0080:G0450:R5080"},
            "org": {"name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14"},
            "activities": ["B0005", "B0008"],
            "selected_roleid": "r2",
            "nhsid_nrbac_roles": [
                {"person_roleid": "r1", "org_code": "A1", "role_code": "R1"},
                {"person_roleid": "r2", "org_code": "Q14", "role_code": "R8000"}
            ],
            "nothing": null
        }))
    }

    #[test]
    fn dotted_paths_walk_objects() {
        let c = nhs();
        let p = ClaimPath::parse("org.code").unwrap();
        assert_eq!(p.lookup(&c), Some(&json!("Q14")));
        assert_eq!(ClaimPath::parse("role.missing").unwrap().lookup(&c), None);
        assert_eq!(ClaimPath::parse("activities.x").unwrap().lookup(&c), None);
        assert_eq!(ClaimPath::parse("nothing").unwrap().lookup(&c), None);
    }

    #[test]
    fn bad_paths_are_refused() {
        assert!(ClaimPath::parse("").is_err());
        assert!(ClaimPath::parse("org..code").is_err());
        assert!(ClaimPath::parse("$[?@.x ==").is_err());
    }

    /// Found by fuzz/ (claims_headers): 20 nested filters took the JSONPath parser 32 s to
    /// refuse; nesting beyond 4 and queries beyond 1 KiB are refused before it runs.
    #[test]
    fn deeply_nested_or_huge_queries_are_refused_before_parsing() {
        let known = include_str!("../fuzz/regressions/claims_headers/jsonpath-nested-filters-32s");
        let hostile = known.lines().max_by_key(|l| l.len()).unwrap();
        let err = ClaimPath::parse(hostile).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 4"), "{err}");

        let nested = |n: usize| format!("$.a{}{}", "[?@.b".repeat(n), "]".repeat(n));
        assert!(ClaimPath::parse(&nested(4)).is_ok());
        assert!(ClaimPath::parse(&nested(5)).is_err());
        // Brackets inside string literals are not nesting.
        assert!(ClaimPath::parse("$.a[?@.b == '[[[[[[']").is_ok());
        assert!(ClaimPath::parse("$.a[?@.b == \"\\\"[[[[[[\"]").is_ok());
        let long = format!("$.a[?@.b == '{}']", "x".repeat(1100));
        let err = ClaimPath::parse(&long).unwrap_err().to_string();
        assert!(err.contains("longer than 1024 bytes"), "{err}");
        // CIS2's role query still parses.
        assert!(ClaimPath::parse(
            "$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].role_code"
        )
        .is_ok());
    }

    /// Found by fuzz/ (claims_headers): the JSONPath parser panicked on these instead of
    /// refusing them, so `check` (and a reload) crashed on such a claim path.
    #[test]
    fn a_query_ending_in_a_unicode_escape_is_refused_not_a_panic() {
        for p in [
            "$['\\u",
            "$[\"\\u",
            "$[?@.a=='\\u",
            "$['\\uD800\\u",
            " $['\\u ",
            "$['\\uD",
            "$['a\\ud8",
            "$['\\uD800\\uDC0",
        ] {
            assert!(matches!(
                ClaimPath::parse(p),
                Err(ClaimPathError::JsonPath(..))
            ));
        }
        assert!(ClaimPath::parse("$['\\u0041']").is_ok());
    }

    #[test]
    fn jsonpath_selects_the_chosen_role_at_login() {
        let full = nhs();
        let q =
            ClaimPath::parse("$.nhsid_nrbac_roles[?@.person_roleid == $.selected_roleid].org_code")
                .unwrap();
        let kept = retain_for(&full, [&q]);
        assert_eq!(q.lookup(&kept), Some(&json!("Q14")));
        let all = ClaimPath::parse("$.nhsid_nrbac_roles[*].org_code").unwrap();
        let kept = retain_for(&full, [&all]);
        assert_eq!(all.lookup(&kept), Some(&json!(["A1", "Q14"])));
    }

    #[test]
    fn retain_keeps_only_what_paths_need_plus_sub() {
        let full = nhs();
        let p = ClaimPath::parse("org.code").unwrap();
        let kept = retain_for(&full, [&p]);
        let mut keys: Vec<&str> = kept.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["org", "sub"]);
    }

    #[test]
    fn userinfo_overrides_profile_claims_but_not_protocol_claims() {
        let mut id = claims(json!({"sub": "a", "iss": "https://op", "name": "Old", "acr": "1"}));
        let ui = claims(
            json!({"sub": "a", "iss": "https://evil", "name": "New", "acr": "9", "email": "a@x"}),
        );
        merge_userinfo(&mut id, ui).unwrap();
        assert_eq!(id["name"], "New");
        assert_eq!(id["email"], "a@x");
        assert_eq!(id["iss"], "https://op");
        assert_eq!(id["acr"], "1");
    }

    #[test]
    fn userinfo_for_another_subject_is_refused() {
        let mut id = claims(json!({"sub": "a"}));
        assert_eq!(
            merge_userinfo(&mut id, claims(json!({"sub": "b"}))),
            Err(MergeError::SubMismatch)
        );
        assert_eq!(
            merge_userinfo(&mut id, claims(json!({"name": "x"}))),
            Err(MergeError::MissingSub)
        );
    }
}
