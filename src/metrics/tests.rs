//! The metrics as a scrape shows them.

use super::*;

/// The contract: every metric of the gateway's own starts with `oidc_gateway_`; only the
/// standard `process_*` ones sit beside them.
#[test]
fn every_name_carries_the_prefix_but_the_standard_process_ones() {
    let m = Metrics::new();
    m.requests.with_label_values(&["r", "200"]).inc();
    m.auth_event("dev", AuthEvent::LoginStarted);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(text.contains("oidc_gateway_requests_total{route=\"r\",status=\"200\"} 1"));
    assert!(
        text.contains("oidc_gateway_auth_events_total{event=\"login_started\",provider=\"dev\"} 1")
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with("oidc_gateway_") || line.starts_with("process_"),
            "{line}"
        );
    }
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
}

/// After a reload the series are those of the configured providers and routes: new ones at
/// zero, removed ones gone, the gateway's own labels kept.
#[test]
fn settle_creates_the_configured_series_and_drops_the_rest() {
    let m = Metrics::new();
    m.settle(&["old"], &["gone", "app"]);
    m.request_done("gone", 200, Duration::from_millis(1), None);
    m.request_done("app", 200, Duration::from_millis(1), None);
    m.request_done("gateway", 302, Duration::from_millis(1), None);
    m.auth_event("old", AuthEvent::LoginFailed);
    m.provider_up.with_label_values(&["old"]).set(0);
    m.settle(&["dev"], &["app"]);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(!text.contains("\"old\""), "{text}");
    assert!(!text.contains("route=\"gone\""), "{text}");
    assert!(text.contains("oidc_gateway_requests_total{route=\"app\",status=\"200\"} 1"));
    assert!(text.contains("oidc_gateway_requests_total{route=\"gateway\",status=\"302\"} 1"));
    assert!(
        text.contains("oidc_gateway_auth_events_total{event=\"login_failed\",provider=\"dev\"} 0")
    );
    assert!(text.contains("oidc_gateway_jwks_refresh_total{provider=\"dev\",result=\"error\"} 0"));
    assert!(text.contains("oidc_gateway_request_duration_seconds_count{route=\"app\"} 1"));
}

#[test]
fn in_flight_follows_guards_and_cookie_sizes_count_values_only() {
    let m = Metrics::new();
    let a = m.in_flight();
    let b = m.in_flight();
    assert_eq!(m.requests_in_flight.get(), 2);
    drop(a);
    assert_eq!(m.requests_in_flight.get(), 1);
    drop(b);
    assert_eq!(m.requests_in_flight.get(), 0);
    m.session_written(
        "dev",
        &[
            "s_0=abcd; Path=/; HttpOnly".to_owned(),
            "s_1=ef; Path=/".to_owned(),
        ],
    );
    let h = m.session_cookie_bytes.with_label_values(&["dev"]);
    assert_eq!(h.get_sample_count(), 1);
    assert_eq!(h.get_sample_sum(), 6.0);
}

#[test]
fn status_labels_are_the_common_codes_and_classes_for_the_rest() {
    for (status, label) in [
        (200, "200"),
        (302, "302"),
        (504, "504"),
        (0, "0"),
        (101, "1xx"),
        (299, "2xx"),
        (399, "3xx"),
        (418, "4xx"),
        (599, "5xx"),
        (999, "5xx"),
    ] {
        assert_eq!(super::status_label(status), label, "{status}");
    }
}

#[test]
fn a_route_handle_counts_into_the_same_series_as_the_labels() {
    let m = Metrics::new();
    let app = m.for_route("app");
    app.request_done(
        200,
        Duration::from_millis(2),
        Some(Duration::from_millis(1)),
    );
    app.request_done(200, Duration::from_millis(2), None);
    m.request_done("app", 200, Duration::from_millis(1), None);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(
        text.contains(r#"oidc_gateway_requests_total{route="app",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"oidc_gateway_upstream_duration_seconds_count{route="app"} 1"#),
        "{text}"
    );
}
