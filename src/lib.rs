//! oidc-gateway library: development OpenID provider and key generation helpers.
pub mod devprovider;
pub mod keygen;
