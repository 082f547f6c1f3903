//! Signing keys: the provider's `private_key_jwt` client key and `server.assertion_key_file`.

use super::Validator;
use crate::config::raw::{RawProvider, RawServer};
use crate::config::{ClientAuth, PrivateKey, Secret};
use jwk::JwkAlg;

impl Validator<'_> {
    pub(super) fn private_key(&mut self, name: &str, p: &RawProvider) -> Option<ClientAuth> {
        let key = format!("providers.{name}.private_key_file");
        if p.client_secret.is_some() || p.client_secret_file.is_some() {
            self.error(
                &format!("providers.{name}.client_secret"),
                "is not used with client_auth = \"private_key_jwt\"",
            );
        }
        let Some(file) = &p.private_key_file else {
            self.error(&key, "is required with client_auth = \"private_key_jwt\" (make one with `oidc-gateway keygen --jwk --out FILE`)");
            return None;
        };
        let alg_key = format!("providers.{name}.private_key_alg");
        self.signing_key(&key, file, &alg_key, &p.private_key_alg)
            .map(ClientAuth::PrivateKeyJwt)
    }

    /// `server.assertion_key_file` (+ `assertion_key_alg`): the key that signs identity
    /// assertions. Configured rather than generated at start-up so that every instance behind a
    /// load balancer signs with a key the upstream already trusts.
    pub(super) fn assertion_key(&mut self, s: &RawServer) -> Option<PrivateKey> {
        let key = "server.assertion_key_file";
        let alg_key = "server.assertion_key_alg";
        let Some(file) = &s.assertion_key_file else {
            if s.assertion_key_alg.is_some() {
                self.error(alg_key, "is only used with server.assertion_key_file");
            }
            return None;
        };
        self.signing_key(key, file, alg_key, &s.assertion_key_alg)
    }

    /// A PEM private key at `file` (the value of `key`) and its JWS algorithm, from `alg_key`
    /// or else the key's default (RSA → RS256, P-256 → ES256, P-384 → ES384). Both signing keys load
    /// through here so that they accept the same key files, default to the same algorithm and
    /// fail with the same messages.
    fn signing_key(
        &mut self,
        key: &str,
        file: &str,
        alg_key: &str,
        alg: &Option<String>,
    ) -> Option<PrivateKey> {
        let file = self.string(key, file)?;
        let path = self.path(&file);
        let pem = match std::fs::read_to_string(&path) {
            Ok(p) => p,
            Err(e) => {
                self.error(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let configured = self.opt_string(alg_key, alg);
        let alg = match &configured {
            Some(a) => match a.parse::<JwkAlg>() {
                Ok(alg) => alg,
                Err(_) => {
                    let all: Vec<&str> = JwkAlg::ALL.iter().map(|a| a.as_str()).collect();
                    self.error(alg_key, format!("{a:?} is not one of {}", all.join(", ")));
                    return None;
                }
            },
            None => match jwk::key_kind_of_pem(&pem) {
                Some(kind) => kind.default_alg(),
                None => {
                    self.error(
                        key,
                        format!(
                            "{} is not an RSA, P-256 or P-384 private key in PEM (PKCS#8, PKCS#1 or SEC1)",
                            path.display()
                        ),
                    );
                    return None;
                }
            },
        };
        match jwk::public_jwk_from_pem(&pem, alg) {
            Ok(jwk) => Some(PrivateKey {
                kid: jwk
                    .get("kid")
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                pem: Secret::new(pem),
                alg,
                alg_configured: configured.is_some(),
            }),
            Err(e) => {
                self.error(
                    key,
                    format!("{} is not a usable {alg} private key: {e}", path.display()),
                );
                None
            }
        }
    }
}
