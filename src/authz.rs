//! `route.require`: every key must match; a key matches when the claim (a scalar, or any scalar
//! element of an array) equals one of the listed values, compared as text.

use serde_json::Value;

use crate::claims::Claims;
use crate::config::Requirement;

/// The first requirement the claims fail, or `None` when all are met.
pub fn first_unmet<'r>(rules: &'r [Requirement], claims: &Claims) -> Option<&'r Requirement> {
    rules.iter().find(|rule| !satisfies(rule, claims))
}

fn satisfies(rule: &Requirement, claims: &Claims) -> bool {
    match rule.path.lookup(claims) {
        Some(Value::Array(items)) => items.iter().any(|v| scalar_matches(v, &rule.values)),
        Some(v) => scalar_matches(v, &rule.values),
        None => false,
    }
}

fn scalar_matches(value: &Value, wanted: &[String]) -> bool {
    match value {
        Value::String(s) => wanted.iter().any(|w| w == s),
        Value::Number(n) => {
            let text = n.to_string();
            wanted.contains(&text)
        }
        Value::Bool(b) => {
            let text = if *b { "true" } else { "false" };
            wanted.iter().any(|w| w == text)
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimPath;
    use serde_json::json;

    fn req(path: &str, values: &[&str]) -> Requirement {
        Requirement {
            path: ClaimPath::parse(path).unwrap(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn claims() -> Claims {
        match json!({
            "activities": ["B0005", "B0008"],
            "org": {"code": "Q14"},
            "level": 3,
            "admin": true,
            "nested": [["B0008"]],
            "obj": {"B0008": 1}
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn any_listed_value_in_an_array_matches() {
        let rules = [req("activities", &["B0008", "B9999"])];
        assert!(first_unmet(&rules, &claims()).is_none());
    }

    #[test]
    fn every_key_must_match() {
        let rules = [req("activities", &["B0008"]), req("org.code", &["A99"])];
        assert_eq!(
            first_unmet(&rules, &claims()).map(|r| r.path.text()),
            Some("org.code")
        );
    }

    #[test]
    fn numbers_and_booleans_compare_as_json_text() {
        assert!(first_unmet(&[req("level", &["3"]), req("admin", &["true"])], &claims()).is_none());
        assert!(first_unmet(&[req("level", &["3.0"])], &claims()).is_some());
    }

    #[test]
    fn objects_nested_arrays_and_missing_claims_never_match() {
        for path in ["obj", "nested", "missing", "org"] {
            assert!(
                first_unmet(&[req(path, &["B0008", "Q14"])], &claims()).is_some(),
                "{path}"
            );
        }
    }
}
