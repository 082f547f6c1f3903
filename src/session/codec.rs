//! Sealing and opening cookie values: AES-256-GCM with the cookie's name as associated data.
//!
//! Layout before base64url (no padding): `version (1) ‖ key id (1) ‖ nonce (12) ‖ ciphertext+tag`.
//! The whole value is sealed once and only then split into chunks, so a truncated, reordered or
//! mixed set of chunks fails the tag. The key id (first byte of the key's SHA-256) picks the key
//! directly during rotation instead of trying each.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const HEADER: usize = 2 + 12;
const TAG: usize = 16;

/// Why a sealed value could not be opened. Deliberately vague: callers treat all as "no session".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not base64url")]
    Encoding,
    #[error("too short or unknown version")]
    Format,
    #[error("sealed with a key this gateway does not hold")]
    UnknownKey,
    #[error("authentication failed (tampered, truncated or for another cookie)")]
    Tag,
}

/// The gateway's cookie keys, ready to seal and open.
pub struct Codec {
    keys: Vec<(u8, Aes256Gcm)>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({} keys)", self.keys.len())
    }
}

impl Codec {
    /// The first key seals; every key opens.
    pub fn new(keys: &[[u8; 32]]) -> Codec {
        Codec {
            keys: keys
                .iter()
                .map(|k| (Sha256::digest(k)[0], Aes256Gcm::new(k.into())))
                .collect(),
        }
    }

    /// Seals `plaintext` for the cookie `name`; the result is base64url text.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let Some((id, cipher)) = self.keys.first() else {
            return String::new();
        };
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(name);
        // Encryption with a valid key and nonce cannot fail for sizes below 64 GiB.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(HEADER + ciphertext.len());
        raw.push(VERSION);
        raw.push(*id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Opens a value sealed for the cookie `name`.
    ///
    /// Decrypts in place in the base64-decoded buffer: every authenticated request opens its
    /// session, and a second multi-kilobyte buffer per request showed in profiles.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let mut raw = URL_SAFE_NO_PAD
            .decode(sealed.as_bytes())
            .map_err(|_| OpenError::Encoding)?;
        if raw.len() < HEADER + TAG || raw[0] != VERSION {
            return Err(OpenError::Format);
        }
        let id = raw[1];
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&raw[2..HEADER]);
        let body_end = raw.len() - TAG;
        let tag = Tag::clone_from_slice(&raw[body_end..]);
        let aad = aad(name);
        let mut candidates = self.keys.iter().filter(|(k, _)| *k == id).peekable();
        if candidates.peek().is_none() {
            return Err(OpenError::UnknownKey);
        }
        for (_, cipher) in candidates {
            // AES-GCM checks the tag before it decrypts, so a failed attempt leaves the
            // ciphertext as it was for the next key with the same id.
            if cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&nonce),
                    &aad,
                    &mut raw[HEADER..body_end],
                    &tag,
                )
                .is_ok()
            {
                raw.truncate(body_end);
                raw.drain(..HEADER);
                return Ok(raw);
            }
        }
        Err(OpenError::Tag)
    }
}

fn aad(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + name.len());
    aad.extend_from_slice(b"oidc-gateway/1/");
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn round_trips() {
        let c = Codec::new(&[key(1)]);
        let sealed = c.seal("s", b"hello");
        assert_eq!(c.open("s", &sealed).unwrap(), b"hello");
    }

    #[test]
    fn another_cookie_name_does_not_open() {
        let c = Codec::new(&[key(1)]);
        let sealed = c.seal("s", b"hello");
        assert_eq!(c.open("other", &sealed), Err(OpenError::Tag));
    }

    #[test]
    fn tampering_and_truncation_fail() {
        let c = Codec::new(&[key(1)]);
        let sealed = c.seal("s", b"hello world");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(c.open("s", std::str::from_utf8(&bytes).unwrap()).is_err());
        assert!(c.open("s", &sealed[..sealed.len() - 4]).is_err());
        assert_eq!(c.open("s", "!!!"), Err(OpenError::Encoding));
        assert_eq!(c.open("s", ""), Err(OpenError::Format));
    }

    #[test]
    fn rotation_old_key_still_opens_new_key_seals() {
        let old = Codec::new(&[key(1)]);
        let sealed_old = old.seal("s", b"x");
        let rotated = Codec::new(&[key(2), key(1)]);
        assert_eq!(rotated.open("s", &sealed_old).unwrap(), b"x");
        let sealed_new = rotated.seal("s", b"y");
        assert_eq!(old.open("s", &sealed_new), Err(OpenError::UnknownKey));
        let dropped = Codec::new(&[key(2)]);
        assert_eq!(dropped.open("s", &sealed_old), Err(OpenError::UnknownKey));
    }
}
