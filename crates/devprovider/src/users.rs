//! The built-in users of the development provider, with NHS CIS2-shaped claims (role, org,
//! activities, workgroups, `nhsid_nrbac_roles` + `selected_roleid`, amr/acr). Tests and the demo
//! page rely on their ids and on the shapes below, so change them with care.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// One built-in user. `claims` is a JSON object holding `sub` and every profile claim; the
/// provider puts all of them in the ID token and the UserInfo response.
#[derive(Debug, Clone)]
pub struct DevUser {
    /// Short id used as `login_hint` and on the login page ("alice", "bob", "jose", "big").
    pub id: &'static str,
    /// One line for the login page: who this user is meant to exercise.
    pub description: &'static str,
    pub claims: Map<String, Value>,
}

impl DevUser {
    pub fn sub(&self) -> &str {
        self.claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.claims
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(self.id)
    }
}

/// The built-in users, in login-page order.
pub fn users() -> &'static [DevUser] {
    static USERS: OnceLock<Vec<DevUser>> = OnceLock::new();
    USERS.get_or_init(build_users)
}

/// A built-in user by id.
pub fn user(id: &str) -> Option<&'static DevUser> {
    users().iter().find(|u| u.id == id)
}

/// One entry of CIS2's `nhsid_nrbac_roles`.
fn nrbac_role(
    person_roleid: &str,
    org_code: &str,
    role_code: &str,
    role_name: &str,
    activity_codes: &[String],
    workgroups: &[&str],
) -> Value {
    json!({
        "person_roleid": person_roleid,
        "org_code": org_code,
        "role_code": role_code,
        "role_name": role_name,
        "activity_codes": activity_codes,
        "workgroups": workgroups,
    })
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        // The literals below are all objects; an empty map keeps this total without a panic.
        _ => Map::new(),
    }
}

fn build_users() -> Vec<DevUser> {
    let alice_activities = strings(&["B0005", "B0008"]);
    let alice = object(json!({
        "sub": "910000000001",
        "uid": "910000000001",
        "name": "Alice Example",
        "given_name": "Alice",
        "family_name": "Example",
        "email": "alice.example@nhs.example",
        "role": {
            "role_id": "555000000011",
            "name": "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
            "code": "S0080:G0450:R8000"
        },
        "org": { "name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14" },
        "activities": alice_activities,
        "workgroups": ["Ward 7 Nursing"],
        "amr": ["pin"],
        "acr": "AAL3_ANY",
        "id_assurance_level": "3",
        "selected_roleid": "555000000011",
        "nhsid_nrbac_roles": [
            nrbac_role("555000000011", "Q14", "S0080:G0450:R8000",
                "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
                &alice_activities, &["Ward 7 Nursing"]),
            nrbac_role("555000000012", "RW3", "S8000:G8000:R8003",
                "\"Admin & Clerical\":\"Admin and Clerical\":\"Medical Secretary Access Role\"",
                &strings(&["B0264"]), &[]),
        ],
    }));

    let bob_activities = strings(&["B0005", "B0264"]);
    let bob = object(json!({
        "sub": "910000000002",
        "uid": "910000000002",
        "name": "Bob Builder",
        "given_name": "Bob",
        "family_name": "Builder",
        "email": "bob.builder@nhs.example",
        "role": {
            "role_id": "555000000021",
            "name": "\"Admin & Clerical\":\"Admin and Clerical\":\"Receptionist Access Role\"",
            "code": "S8000:G8000:R8001"
        },
        "org": { "name": "LEEDS TEACHING HOSPITALS NHS TRUST", "code": "RR8" },
        "activities": bob_activities,
        "workgroups": [],
        "amr": ["pin"],
        "acr": "AAL3_ANY",
        "id_assurance_level": "3",
        "selected_roleid": "555000000021",
        "nhsid_nrbac_roles": [
            nrbac_role("555000000021", "RR8", "S8000:G8000:R8001",
                "\"Admin & Clerical\":\"Admin and Clerical\":\"Receptionist Access Role\"",
                &bob_activities, &[]),
        ],
    }));

    let jose_activities = strings(&["B0005", "B0008", "B0069"]);
    let jose = object(json!({
        "sub": "910000000003",
        "uid": "910000000003",
        "name": "José Müller",
        "given_name": "José",
        "family_name": "Müller",
        "email": "jose.muller@nhs.example",
        "role": {
            "role_id": "555000000031",
            "name": "\"Clinical\":\"Clinical Provision\":\"Médecin — Consultant\"",
            "code": "S0080:G0450:R8000"
        },
        "org": { "name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14" },
        "activities": jose_activities,
        "workgroups": ["Équipe de garde"],
        "amr": ["pin"],
        "acr": "AAL3_ANY",
        "id_assurance_level": "3",
        "selected_roleid": "555000000031",
        "nhsid_nrbac_roles": [
            nrbac_role("555000000031", "Q14", "S0080:G0450:R8000",
                "\"Clinical\":\"Clinical Provision\":\"Médecin — Consultant\"",
                &jose_activities, &["Équipe de garde"]),
        ],
    }));

    // "big" exists to push a session over one cookie: ~60 activities and 40 roles.
    let big_activities: Vec<String> = (1..=60).map(|i| format!("B{i:04}")).collect();
    let big_workgroups: Vec<String> = (1..=20).map(|i| format!("Workgroup {i:02}")).collect();
    let big_workgroup_refs: Vec<&str> = big_workgroups.iter().map(String::as_str).collect();
    let big_roles: Vec<Value> = (1..=40)
        .map(|i| {
            nrbac_role(
                &format!("5550000010{i:02}"),
                &format!("R{:02}", 10 + i),
                &format!("S8000:G8000:R80{i:02}"),
                &format!("\"Clinical\":\"Clinical Provision\":\"Role number {i}\""),
                &big_activities[..(i * 3 % 60).max(5)],
                &big_workgroup_refs[..(i % 5) + 1],
            )
        })
        .collect();
    let big = object(json!({
        "sub": "910000000004",
        "uid": "910000000004",
        "name": "Bartholomew Big-Claims",
        "given_name": "Bartholomew",
        "family_name": "Big-Claims",
        "email": "big.claims@nhs.example",
        "role": {
            "role_id": "555000001001",
            "name": "\"Clinical\":\"Clinical Provision\":\"Role number 1\"",
            "code": "S8000:G8000:R8001"
        },
        "org": { "name": "GREATER MANCHESTER STRATEGIC HA", "code": "Q14" },
        "activities": big_activities,
        "workgroups": big_workgroups,
        "amr": ["pin", "legacy_signed_challenge"],
        "acr": "AAL3_ANY",
        "id_assurance_level": "3",
        "selected_roleid": "555000001001",
        "nhsid_nrbac_roles": big_roles,
    }));

    vec![
        DevUser {
            id: "alice",
            description: "Nurse at Q14 with activities B0005 and B0008; two roles",
            claims: alice,
        },
        DevUser {
            id: "bob",
            description: "Receptionist at another organisation (RR8), no B0008",
            claims: bob,
        },
        DevUser {
            id: "jose",
            description: "Non-ASCII name and role text",
            claims: jose,
        },
        DevUser {
            id: "big",
            description: "Very large claims (40 roles, 60 activities): several cookie chunks",
            claims: big,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_role_is_among_the_roles() {
        for u in users() {
            let selected = u.claims["selected_roleid"].as_str().unwrap();
            let roles = u.claims["nhsid_nrbac_roles"].as_array().unwrap();
            assert!(
                roles.iter().any(|r| r["person_roleid"] == selected),
                "{}",
                u.id
            );
            assert!(!u.sub().is_empty());
        }
    }

    #[test]
    fn shapes_the_tests_rely_on() {
        let alice = user("alice").unwrap();
        assert_eq!(alice.name(), "Alice Example");
        assert_eq!(alice.claims["org"]["code"], "Q14");
        assert_eq!(alice.claims["role"]["code"], "S0080:G0450:R8000");
        let bob = user("bob").unwrap();
        assert_ne!(bob.claims["org"]["code"], "Q14");
        assert!(!bob.claims["activities"]
            .as_array()
            .unwrap()
            .contains(&json!("B0008")));
        assert_eq!(user("jose").unwrap().name(), "José Müller");
        let big = user("big").unwrap();
        assert_eq!(
            big.claims["nhsid_nrbac_roles"].as_array().unwrap().len(),
            40
        );
        assert_eq!(big.claims["activities"].as_array().unwrap().len(), 60);
        // Several 4 KB cookies' worth even before encryption overhead.
        assert!(Value::Object(big.claims.clone()).to_string().len() > 8000);
        assert!(user("nobody").is_none());
    }
}
