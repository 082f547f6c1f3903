//! Discovery: GET the configured `discovery_url` (which may differ from the issuer, as on NHS
//! Spine), parse the provider metadata with openidconnect, and require that its `issuer` is the
//! configured one byte for byte. openidconnect's own `discover_async` cannot fetch from another
//! URL than the issuer's, hence the manual fetch (openidconnect-rs #159).

use openidconnect::core::{CoreJwsSigningAlgorithm, CoreProviderMetadata};
use serde::Deserialize;
use url::Url;

use super::http::{CallError, Endpoint, ProviderHttp};
use crate::config::ProviderConfig;

/// What the gateway uses from the discovery document.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Url,
    pub end_session_endpoint: Option<Url>,
    /// Algorithms accepted for ID tokens (configured, or advertised minus none and HS*).
    pub id_token_algs: Vec<CoreJwsSigningAlgorithm>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("discovery document at {url} is invalid: {reason}")]
    Invalid { url: String, reason: String },
    /// A configuration error: the document names another issuer than the configured one.
    #[error("discovery document at {url} names issuer {found:?} but the configured issuer is {configured:?}")]
    IssuerMismatch {
        url: String,
        configured: String,
        found: String,
    },
}

#[derive(Deserialize)]
struct Extra {
    end_session_endpoint: Option<String>,
}

/// Fetches and checks the provider's discovery document.
pub async fn discover(
    http: &ProviderHttp,
    cfg: &ProviderConfig,
) -> Result<Discovered, DiscoveryError> {
    let url = cfg.discovery_url.as_str();
    let body = http.get(Endpoint::Discovery, url, None).await?;
    parse(&body, cfg)
}

/// Parses and checks a discovery document.
pub fn parse(body: &[u8], cfg: &ProviderConfig) -> Result<Discovered, DiscoveryError> {
    let url = cfg.discovery_url.as_str();
    let invalid = |reason: String| DiscoveryError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let metadata: CoreProviderMetadata =
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let found = metadata.issuer().as_str();
    if found != cfg.issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_owned(),
            configured: cfg.issuer.clone(),
            found: found.to_owned(),
        });
    }
    let extra: Extra = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let endpoint = |name: &str, value: &str| -> Result<Url, DiscoveryError> {
        let u = Url::parse(value).map_err(|e| invalid(format!("{name}: {e}")))?;
        let loopback = matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || u.host_str() == Some("localhost");
        match u.scheme() {
            "https" => Ok(u),
            "http" if loopback || cfg.allow_insecure_http => Ok(u),
            _ => Err(invalid(format!("{name} {value:?} must be https"))),
        }
    };
    let token_endpoint = metadata
        .token_endpoint()
        .ok_or_else(|| invalid("no token_endpoint".into()))?;
    let id_token_algs: Vec<CoreJwsSigningAlgorithm> = match &cfg.id_token_algs {
        Some(algs) => algs
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect(),
        None => metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    CoreJwsSigningAlgorithm::None
                        | CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                )
            })
            .cloned()
            .collect(),
    };
    if id_token_algs.is_empty() {
        return Err(invalid(
            "no usable id_token_signing_alg_values_supported (none and HS* are refused unless configured)".into(),
        ));
    }
    Ok(Discovered {
        authorization_endpoint: endpoint(
            "authorization_endpoint",
            metadata.authorization_endpoint().as_str(),
        )?,
        token_endpoint: endpoint("token_endpoint", token_endpoint.as_str())?,
        userinfo_endpoint: metadata
            .userinfo_endpoint()
            .map(|u| endpoint("userinfo_endpoint", u.as_str()))
            .transpose()?,
        jwks_uri: endpoint("jwks_uri", metadata.jwks_uri().as_str())?,
        end_session_endpoint: extra
            .end_session_endpoint
            .map(|u| endpoint("end_session_endpoint", &u))
            .transpose()?,
        id_token_algs,
    })
}
