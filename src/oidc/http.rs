//! The HTTP client for one provider: timeouts, no redirects (SSRF), and a timing metric per
//! endpoint. Errors say whether the provider was unreachable (→ 503) or answered badly (→ 401).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::metrics::Metrics;

/// Which provider endpoint a call goes to (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Discovery,
    Jwks,
    Token,
    Userinfo,
}

impl Endpoint {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Token => "token",
            Endpoint::Userinfo => "userinfo",
        }
    }
}

/// A failed call to the provider.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection refused, DNS, TLS or timeout: the provider cannot be reached now.
    #[error("{endpoint} endpoint unreachable: {reason}")]
    Unreachable {
        endpoint: &'static str,
        reason: String,
    },
    /// The answer is larger than `max_response_bytes`: a broken or hostile provider.
    #[error(
        "{endpoint} endpoint answer is larger than {limit} bytes (providers.*.max_response_bytes)"
    )]
    TooLarge {
        endpoint: &'static str,
        limit: usize,
    },
    /// The provider answered with an error status.
    #[error("{endpoint} endpoint answered HTTP {status}")]
    Status {
        endpoint: &'static str,
        status: u16,
        body: Bytes,
    },
}

impl CallError {
    /// Whether this is the provider being down (unreachable or 5xx) rather than refusing us.
    pub fn is_unavailable(&self) -> bool {
        match self {
            CallError::Unreachable { .. } => true,
            CallError::Status { status, .. } => *status >= 500,
            CallError::TooLarge { .. } => false,
        }
    }
}

/// One provider's HTTP client.
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    provider: String,
    max_body: usize,
    metrics: Metrics,
    /// The gateway's own last call (discovery, JWKS, the probe) found the provider down
    /// (unreachable, timed out, 5xx), and no call succeeded since; `provider_up` is 0.
    down: Arc<AtomicBool>,
    /// A call on a user's behalf (token, UserInfo) failed that way: the provider is checked at
    /// once. Such a call alone never marks it down, since a client can provoke it (a junk
    /// `code` that a provider answers with a 5xx), and that would refuse everyone's logins.
    suspect: Arc<AtomicBool>,
}

impl ProviderHttp {
    /// A client with the provider's timeout; redirects are never followed.
    pub fn new(
        provider: &str,
        timeout: Duration,
        max_body: usize,
        metrics: Metrics,
    ) -> ProviderHttp {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("oidc-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        ProviderHttp {
            client,
            provider: provider.to_owned(),
            max_body,
            metrics,
            down: Arc::new(AtomicBool::new(false)),
            suspect: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Takes over a predecessor's finding that the provider is down (a reload).
    pub fn mark_down(&self) {
        self.down.store(true, Ordering::Relaxed);
    }

    /// Whether a call on a user's behalf found the provider unreachable since the last look.
    pub fn take_suspect(&self) -> bool {
        self.suspect.swap(false, Ordering::Relaxed)
    }

    /// Whether the last call found the provider down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// GET a URL, with an optional bearer token; the body of a 2xx answer.
    pub async fn get(
        &self,
        endpoint: Endpoint,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<Bytes, CallError> {
        let mut req = self.client.get(url).header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        self.send(endpoint, req).await
    }

    /// Whether the provider answers a GET of `url` within `limit` (any answer but a 5xx counts:
    /// the point is reachability). Updates `provider_up` like every call.
    pub async fn probe(&self, endpoint: Endpoint, url: &str, limit: Duration) -> bool {
        let req = self
            .client
            .get(url)
            .timeout(limit)
            .header("accept", "application/json");
        !matches!(self.send(endpoint, req).await, Err(e) if e.is_unavailable())
    }

    /// POST a form; the body of a 2xx answer.
    pub async fn post_form(
        &self,
        endpoint: Endpoint,
        url: &str,
        form: &[(&str, &str)],
        basic_auth: Option<(&str, &str)>,
    ) -> Result<Bytes, CallError> {
        let mut req = self
            .client
            .post(url)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some((user, password)) = basic_auth {
            req = req.basic_auth(user, Some(password));
        }
        self.send(endpoint, req).await
    }

    async fn send(
        &self,
        endpoint: Endpoint,
        req: reqwest::RequestBuilder,
    ) -> Result<Bytes, CallError> {
        let started = Instant::now();
        let result = async {
            let mut resp = req.send().await.map_err(|e| unreachable(endpoint, &e))?;
            let status = resp.status().as_u16();
            let too_large = CallError::TooLarge {
                endpoint: endpoint.label(),
                limit: self.max_body,
            };
            if resp
                .content_length()
                .is_some_and(|n| n > self.max_body as u64)
            {
                return Err(too_large);
            }
            // Read in chunks: a provider that sends no length (or lies) is cut off at the cap.
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(endpoint, &e))? {
                if body.len() + chunk.len() > self.max_body {
                    return Err(too_large);
                }
                body.extend_from_slice(&chunk);
            }
            let body = body.freeze();
            if (200..300).contains(&status) {
                Ok(body)
            } else {
                Err(CallError::Status {
                    endpoint: endpoint.label(),
                    status,
                    body,
                })
            }
        }
        .await;
        let labels = [self.provider.as_str(), endpoint.label()];
        self.metrics
            .provider_request_duration
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics
                .provider_errors
                .with_label_values(&labels)
                .inc();
        }
        // Up unless it could not be reached or failed itself: a 4xx (a bad code, say) is the
        // provider working as it should.
        let up = !result.as_ref().err().is_some_and(CallError::is_unavailable);
        let own = matches!(endpoint, Endpoint::Discovery | Endpoint::Jwks);
        if up || own {
            self.down.store(!up, Ordering::Relaxed);
            self.metrics
                .provider_up
                .with_label_values(&[self.provider.as_str()])
                .set(i64::from(up));
        } else {
            self.suspect.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// Describes a transport error without the URL (which may carry a query we must not log).
fn unreachable(endpoint: Endpoint, e: &reqwest::Error) -> CallError {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.without_url_ref_string()
    };
    CallError::Unreachable {
        endpoint: endpoint.label(),
        reason,
    }
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    /// The metrics create each endpoint's error series up front from their own list.
    #[test]
    fn the_metrics_know_every_endpoint_label() {
        let labels = [
            Endpoint::Discovery,
            Endpoint::Jwks,
            Endpoint::Token,
            Endpoint::Userinfo,
        ]
        .map(Endpoint::label);
        assert_eq!(labels, crate::metrics::PROVIDER_ENDPOINTS);
    }
}
