//! How strongly, and how recently, the user authenticated: a route's `require_acr` and
//! `max_auth_age` (OpenID Connect `acr_values` and `max_age`; RFC 9470 for API clients). A
//! session or token that does not meet them is not refused but stepped up: the browser signs in
//! again asking for what the route needs, and the login's ID token is checked to have it.

use crate::claims::Claims;
use crate::config::Assurance;

/// What a request lacked, and what a new login must ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// The route's accepted `acr` values, space-separated (`acr_values`), if it names any.
    pub acr_values: Option<String>,
    /// The route's `max_auth_age` in seconds (`max_age`), if it has one.
    pub max_age: Option<u64>,
    /// Whether the `acr` was wrong (a login at the provider's existing session would give the
    /// same one, so the provider is asked to authenticate again).
    pub acr_unmet: bool,
}

impl StepUp {
    /// What a login for a route with these requirements asks for, before any session exists.
    pub fn asked_by(a: &Assurance) -> StepUp {
        StepUp {
            acr_values: (!a.acr.is_empty()).then(|| a.acr.join(" ")),
            max_age: a.max_age,
            acr_unmet: false,
        }
    }
}

/// Whether `claims` (a session's or a bearer token's) meet `a` at `now` (Unix seconds).
pub fn check(a: &Assurance, claims: &Claims, now: u64) -> Result<(), StepUp> {
    if !a.is_required() {
        return Ok(());
    }
    let acr_unmet = !a.acr.is_empty() && !acr_in(claims, &a.acr);
    let too_old = a
        .max_age
        .is_some_and(|max| !authenticated_within(claims, max, now, 0));
    if acr_unmet || too_old {
        return Err(StepUp {
            acr_unmet,
            ..StepUp::asked_by(a)
        });
    }
    Ok(())
}

/// Why a login's ID token does not give what the login asked for (`acr` among `acr`, and
/// `auth_time` within `max_age` plus `skew` of `now`; OpenID Connect Core §3.1.3.7).
pub fn check_login(
    acr: &[String],
    max_age: Option<u64>,
    claims: &Claims,
    now: u64,
    skew: u64,
) -> Result<(), &'static str> {
    if !acr.is_empty() && !acr_in(claims, acr) {
        return Err("the provider did not authenticate at the requested level (acr)");
    }
    if let Some(max) = max_age {
        if !authenticated_within(claims, max, now, skew) {
            return Err("the provider did not authenticate recently enough (auth_time)");
        }
    }
    Ok(())
}

fn acr_in(claims: &Claims, accepted: &[String]) -> bool {
    claims
        .get("acr")
        .and_then(|v| v.as_str())
        .is_some_and(|acr| accepted.iter().any(|a| a == acr))
}

/// `auth_time` is present, not in the future beyond `skew`, and at most `max` + `skew` old.
fn authenticated_within(claims: &Claims, max: u64, now: u64, skew: u64) -> bool {
    claims
        .get("auth_time")
        .and_then(|v| v.as_u64())
        .is_some_and(|t| t <= now + skew && now.saturating_sub(t) <= max + skew)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    fn route(acr: &[&str], max_age: Option<u64>) -> Assurance {
        Assurance {
            acr: acr.iter().map(|a| (*a).to_owned()).collect(),
            max_age,
        }
    }

    #[test]
    fn a_route_without_requirements_takes_any_session() {
        assert_eq!(check(&route(&[], None), &claims(json!({})), 100), Ok(()));
    }

    #[test]
    fn the_acr_must_be_one_of_the_routes() {
        let aal3 = route(&["AAL3_ANY", "AAL3_SMARTCARD"], None);
        assert_eq!(
            check(&aal3, &claims(json!({"acr": "AAL3_ANY"})), 100),
            Ok(())
        );
        for weak in [
            json!({"acr": "AAL2_OTP"}),
            json!({}),
            json!({"acr": ["AAL3_ANY"]}),
        ] {
            let step = check(&aal3, &claims(weak), 100).unwrap_err();
            assert!(step.acr_unmet);
            assert_eq!(step.acr_values.as_deref(), Some("AAL3_ANY AAL3_SMARTCARD"));
            assert_eq!(step.max_age, None);
        }
    }

    #[test]
    fn auth_time_must_be_recent_and_present() {
        let recent = route(&[], Some(900));
        let at = |t: u64| claims(json!({"auth_time": t}));
        assert_eq!(check(&recent, &at(1_000), 1_900), Ok(()));
        let step = check(&recent, &at(1_000), 1_901).unwrap_err();
        assert!(!step.acr_unmet);
        assert_eq!(step.max_age, Some(900));
        assert!(check(&recent, &claims(json!({})), 1_000).is_err());
        // A time in the future is no proof of a recent login.
        assert!(check(&recent, &at(5_000), 1_000).is_err());
    }

    #[test]
    fn a_login_must_return_what_it_asked_for() {
        let acr = vec!["AAL3_ANY".to_owned()];
        let good = claims(json!({"acr": "AAL3_ANY", "auth_time": 1_000}));
        assert_eq!(check_login(&acr, Some(60), &good, 1_010, 5), Ok(()));
        let weak = claims(json!({"acr": "AAL2_OTP", "auth_time": 1_000}));
        assert!(check_login(&acr, None, &weak, 1_010, 5)
            .unwrap_err()
            .contains("acr"));
        let old = check_login(&[], Some(60), &good, 1_066, 5);
        assert!(old.unwrap_err().contains("auth_time"));
        assert_eq!(check_login(&[], Some(60), &good, 1_065, 5), Ok(()));
        assert_eq!(check_login(&[], None, &claims(json!({})), 1, 0), Ok(()));
    }

    fn config(route_extra: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://apps.example.org"

[session]
keys = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]

[providers.cis2]
issuer = "https://connect.example.org/token"
client_id = "client"
client_secret = "secret"

[[route]]
path = "/"
upstream = "http://127.0.0.1:3000"
{route_extra}
"#
        )
    }

    #[test]
    fn check_reads_the_requirements_and_refuses_unusable_ones() {
        let c = crate::config::parse_str(
            &config("require_acr = [\"AAL3_ANY\"]\nmax_auth_age = \"15m\""),
            None,
        )
        .unwrap();
        assert_eq!(c.routes[0].assurance, route(&["AAL3_ANY"], Some(900)));
        for (extra, key) in [
            ("require_acr = []", "route[0].require_acr"),
            ("require_acr = [\"AAL3 ANY\"]", "route[0].require_acr[0]"),
            ("require_acr = [\"a\\\"b\"]", "route[0].require_acr[0]"),
            ("max_auth_age = \"0s\"", "route[0].max_auth_age"),
            ("max_auth_age = \"soon\"", "route[0].max_auth_age"),
            (
                "auth = \"public\"\nrequire_acr = [\"AAL3_ANY\"]",
                "route[0].require_acr",
            ),
        ] {
            let problems = crate::config::parse_str(&config(extra), None)
                .unwrap_err()
                .0;
            assert!(
                problems.iter().any(|p| p.key == key),
                "{extra}: {problems:?}"
            );
        }
    }
}
