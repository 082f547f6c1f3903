//! The request metrics of one `route` label, with handles resolved once instead of per request.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// Every `status` label: the common codes, then classes for the rare ones.
const STATUS_LABELS: [&str; 28] = [
    "200", "201", "202", "204", "206", "301", "302", "303", "304", "307", "308", "400", "401",
    "403", "404", "405", "431", "500", "501", "502", "503", "504", "0", "1xx", "2xx", "3xx", "4xx",
    "5xx",
];

/// Where a status code's label is in `STATUS_LABELS` (no allocation, no hashing).
fn status_index(status: u16) -> usize {
    const CODES: [u16; 23] = [
        200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 431, 500,
        501, 502, 503, 504, 0,
    ];
    if let Some(i) = CODES.iter().position(|&c| c == status) {
        return i;
    }
    CODES.len()
        + match status {
            s if s < 200 => 0,
            s if s < 300 => 1,
            s if s < 400 => 2,
            s if s < 500 => 3,
            _ => 4,
        }
}

/// Status code as a metric label without allocating; rare codes fold into classes.
#[cfg(test)]
pub(super) fn status_label(status: u16) -> &'static str {
    STATUS_LABELS[status_index(status)]
}

/// One `route` label's request metrics, resolved once per configuration state instead of per
/// request: `with_label_values` hashes the labels and takes the vector's lock on every call,
/// three times per request (`benches/load.sh --perf`). Each series is made at its first use,
/// so /metrics shows the same series as before.
pub struct RouteMetrics {
    route: String,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    by_status: [OnceLock<IntCounter>; STATUS_LABELS.len()],
    duration: OnceLock<Histogram>,
    upstream: OnceLock<Histogram>,
}

impl RouteMetrics {
    pub(super) fn new(
        route: &str,
        requests: &IntCounterVec,
        request_duration: &HistogramVec,
        upstream_duration: &HistogramVec,
    ) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            requests: requests.clone(),
            request_duration: request_duration.clone(),
            upstream_duration: upstream_duration.clone(),
            by_status: std::array::from_fn(|_| OnceLock::new()),
            duration: OnceLock::new(),
            upstream: OnceLock::new(),
        }
    }

    /// Counts a finished request and observes its durations.
    pub fn request_done(&self, status: u16, elapsed: Duration, upstream: Option<Duration>) {
        let i = status_index(status);
        self.by_status[i]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[self.route.as_str(), STATUS_LABELS[i]])
            })
            .inc();
        let route = [self.route.as_str()];
        self.duration
            .get_or_init(|| self.request_duration.with_label_values(&route))
            .observe(elapsed.as_secs_f64());
        if let Some(up) = upstream {
            self.upstream
                .get_or_init(|| self.upstream_duration.with_label_values(&route))
                .observe(up.as_secs_f64());
        }
    }
}
