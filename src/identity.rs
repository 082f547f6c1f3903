//! Claims → identity header values, as the contract renders them.
//!
//! A string is sent as is (UTF-8 bytes), a number or boolean as its JSON text, an array joined
//! with `,`, an object as compact JSON. Control characters are replaced by spaces, so no claim
//! can split a header or smuggle a second one.

use serde_json::Value;

use crate::claims::Claims;
use crate::config::HeaderRule;

/// The identity headers of one request: (configured name, value bytes).
pub fn headers<'r>(rules: &'r [HeaderRule], claims: &Claims) -> Vec<(&'r HeaderRule, Vec<u8>)> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        if let Some(value) = rule.paths.iter().find_map(|p| p.lookup(claims)) {
            let mut bytes = Vec::with_capacity(32);
            render(value, &mut bytes);
            out.push((rule, bytes));
        }
    }
    out
}

/// Renders one claim value into header bytes.
pub fn render(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => {}
        Value::String(s) => push_safe(s.as_bytes(), out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                render(item, out);
            }
        }
        other => {
            // Numbers, booleans and objects as compact JSON; serde_json escapes control
            // characters inside strings, but run it through the filter all the same.
            let text = serde_json::to_string(other).unwrap_or_default();
            push_safe(text.as_bytes(), out);
        }
    }
}

/// Appends bytes, replacing CR, LF, NUL, other C0 controls except TAB, and DEL with a space.
fn push_safe(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend(bytes.iter().map(|&b| match b {
        b'\t' => b'\t',
        0x00..=0x1f | 0x7f => b' ',
        _ => b,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimPath;
    use http::HeaderName;
    use serde_json::json;

    fn rule(name: &str, paths: &[&str]) -> HeaderRule {
        HeaderRule {
            name: HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            display: name.to_owned(),
            spelling: bytes::Bytes::copy_from_slice(name.as_bytes()),
            paths: paths.iter().map(|p| ClaimPath::parse(p).unwrap()).collect(),
        }
    }

    fn text(v: Value) -> String {
        let mut out = Vec::new();
        render(&v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_each_json_type_as_the_contract_says() {
        assert_eq!(text(json!("Q14")), "Q14");
        assert_eq!(text(json!(42)), "42");
        assert_eq!(text(json!(true)), "true");
        assert_eq!(text(json!(["B0005", "B0008"])), "B0005,B0008");
        assert_eq!(
            text(json!({"code": "Q14", "name": "X"})),
            r#"{"code":"Q14","name":"X"}"#
        );
        assert_eq!(text(json!([1, {"a": 1}])), r#"1,{"a":1}"#);
    }

    #[test]
    fn control_characters_become_spaces_and_utf8_stays() {
        assert_eq!(text(json!("a\r\nX-Evil: 1")), "a  X-Evil: 1");
        assert_eq!(text(json!("nul\0del\u{7f}tab\t")), "nul del tab\t");
        assert_eq!(text(json!("José Müller")), "José Müller");
    }

    #[test]
    fn first_present_path_wins_and_missing_claims_send_nothing() {
        let claims = match json!({"sub": "u1", "role": "S0080:G0450:R5080"}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let rules = [
            rule("X-Auth-Role", &["role.code", "role"]),
            rule("X-Auth-Org", &["org.code"]),
        ];
        let out = headers(&rules, &claims);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.display, "X-Auth-Role");
        assert_eq!(out[0].1, b"S0080:G0450:R5080");
    }
}
