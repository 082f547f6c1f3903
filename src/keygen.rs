//! Key material for `oidc-gateway keygen`: cookie keys, and private keys written to files
//! only their owner can read. The JWK side (generation, public JWKs, thumbprints) is the `jwk`
//! crate.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;

/// A new cookie encryption key: standard base64 of 32 random bytes from the OS.
pub fn cookie_key() -> String {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    STANDARD.encode(key)
}

/// Writes a private key PEM to a new file readable only by its owner (mode 0600 on Unix).
/// Refuses to overwrite an existing file, so a typo cannot destroy a registered key.
pub fn write_private_key(path: &Path, pem: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{} already exists; refusing to overwrite a private key",
                    path.display()
                ),
            )
        } else {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        }
    })?;
    let written = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Do not leave a truncated key behind that a later run would refuse to overwrite.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_key_is_32_bytes_base64() {
        let k = cookie_key();
        assert_eq!(STANDARD.decode(&k).unwrap().len(), 32);
        assert_ne!(k, cookie_key());
    }

    #[test]
    fn write_private_key_is_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private_key(&path, "secret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = write_private_key(&path, "other").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    }
}
