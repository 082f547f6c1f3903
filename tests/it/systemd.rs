//! The hardened systemd unit: `systemd-analyze verify` accepts it (with its binary paths pointed
//! at the binary under test), and `systemd-analyze security --offline=true` rates its exposure
//! "OK" or better. Skipped, saying so, only where systemd-analyze is not installed.

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../../systemd/oidc-gateway.service");

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then_some("systemd-analyze")
}

/// The unit with `/usr/local/bin/oidc-gateway` replaced by the binary under test, written under
/// the unit's own name (systemd-analyze reads the name from the file).
fn unit_copy(dir: &Path) -> std::path::PathBuf {
    let text = UNIT.replace(
        "/usr/local/bin/oidc-gateway",
        env!("CARGO_BIN_EXE_oidc-gateway"),
    );
    assert_ne!(text, UNIT, "the unit names /usr/local/bin/oidc-gateway");
    let path = dir.join("oidc-gateway.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_its_exposure_is_ok_or_better() {
    let Some(analyze) = systemd_analyze() else {
        println!("SKIPPED: systemd-analyze is not installed; the systemd unit was not checked");
        return;
    };
    for line in [
        "ExecStartPre=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LoadCredential=",
    ] {
        assert!(UNIT.contains(line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());

    let verify = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    // verify exits 0 on some warnings; any line about our unit is a problem to fix.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("oidc-gateway.service"))
        .collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify: {said}");

    let security = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout);
    let overall = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    println!("{}", overall.trim());
    // "→ Overall exposure level for oidc-gateway.service: 1.6 OK 🙂"
    let mut words = overall.rsplit(':').next().unwrap_or("").split_whitespace();
    let score: f64 = words.next().and_then(|w| w.parse().ok()).unwrap();
    let rating = words.next().unwrap_or("");
    assert!(
        matches!(rating, "OK" | "SAFE" | "PERFECT"),
        "exposure {score} {rating}: {overall}"
    );
    assert!(score <= 4.0, "{overall}");
}
