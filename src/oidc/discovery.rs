//! Discovery: GET the configured `discovery_url` (which may differ from the issuer, as on NHS
//! Spine), parse the provider metadata with openidconnect, and require that its `issuer` is the
//! configured one byte for byte. openidconnect's own `discover_async` cannot fetch from another
//! URL than the issuer's, hence the manual fetch (openidconnect-rs #159).

use openidconnect::core::{CoreJwsSigningAlgorithm, CoreProviderMetadata};
use serde::Deserialize;
use url::Url;

use super::http::{CallError, Endpoint, ProviderHttp};
use crate::config::{ClientAuth, PrivateKey, ProviderConfig};
use jwk::JwkAlg;

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
    /// What `private_key_jwt` client assertions are signed with (see [`assertion_alg`]).
    pub client_assertion_alg: Option<JwkAlg>,
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
    let advertised: Option<Vec<String>> = metadata
        .token_endpoint_auth_signing_alg_values_supported()
        .map(|algs| {
            algs.iter()
                .filter_map(|a| serde_json::to_value(a).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
    let client_assertion_alg = match &cfg.client_auth {
        ClientAuth::PrivateKeyJwt(key) => {
            Some(assertion_alg(key, advertised.as_deref()).map_err(&invalid)?)
        }
        _ => None,
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
        client_assertion_alg,
    })
}

/// The algorithm of the client assertions: the configured one (whatever the provider says:
/// the operator set it, and a warning says when the provider does not list it), else the first
/// of the provider's `token_endpoint_auth_signing_alg_values_supported` that this kind of key
/// can sign (CIS2 lists only RS512), else the key's default.
pub fn assertion_alg(key: &PrivateKey, advertised: Option<&[String]>) -> Result<JwkAlg, String> {
    let Some(advertised) = advertised.filter(|a| !a.is_empty()) else {
        return Ok(key.alg);
    };
    if key.alg_configured {
        if !advertised.iter().any(|a| a == key.alg.as_str()) {
            tracing::warn!(
                alg = key.alg.as_str(),
                advertised = ?advertised,
                "private_key_alg is not in the provider's token_endpoint_auth_signing_alg_values_supported"
            );
        }
        return Ok(key.alg);
    }
    advertised
        .iter()
        .filter_map(|a| a.parse::<JwkAlg>().ok())
        .find(|a| a.key_kind() == key.alg.key_kind())
        .ok_or_else(|| {
            format!(
                "token_endpoint_auth_signing_alg_values_supported {advertised:?} has no algorithm for the private key ({:?}); set private_key_alg or use another kind of key",
                key.alg.key_kind()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn key(alg: JwkAlg, configured: bool) -> PrivateKey {
        PrivateKey {
            pem: Secret::new(String::new()),
            alg,
            alg_configured: configured,
            kid: String::new(),
        }
    }

    fn list(algs: &[&str]) -> Vec<String> {
        algs.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn an_unconfigured_key_signs_with_the_first_advertised_algorithm_of_its_kind() {
        let cis2 = list(&["ES256", "RS512", "RS256"]);
        assert_eq!(
            assertion_alg(&key(JwkAlg::RS256, false), Some(&cis2)),
            Ok(JwkAlg::RS512)
        );
        assert_eq!(
            assertion_alg(&key(JwkAlg::ES256, false), Some(&cis2)),
            Ok(JwkAlg::ES256)
        );
        let p384 = list(&["ES256", "ES384"]);
        assert_eq!(
            assertion_alg(&key(JwkAlg::ES384, false), Some(&p384)),
            Ok(JwkAlg::ES384)
        );
        // Nothing advertised: the key's default.
        assert_eq!(
            assertion_alg(&key(JwkAlg::ES384, false), None),
            Ok(JwkAlg::ES384)
        );
        assert_eq!(
            assertion_alg(&key(JwkAlg::RS256, false), Some(&[])),
            Ok(JwkAlg::RS256)
        );
    }

    #[test]
    fn no_advertised_algorithm_for_the_key_is_a_discovery_error() {
        let err = assertion_alg(&key(JwkAlg::ES256, false), Some(&list(&["RS512", "HS256"])));
        assert!(err.unwrap_err().contains("set private_key_alg"));
    }

    #[test]
    fn a_configured_algorithm_is_kept_whatever_is_advertised() {
        let only_rs512 = list(&["RS512"]);
        assert_eq!(
            assertion_alg(&key(JwkAlg::PS256, true), Some(&only_rs512)),
            Ok(JwkAlg::PS256)
        );
    }
}
