//! Identity tokens: `hex(identity) "." hex(HMAC-SHA256(key, identity))`.
//!
//! The key lives in the data directory (`identity.key`, 32 random bytes, created on first
//! start) so tokens survive restarts; an in-memory server draws a fresh key per process.
//! A token proves the identity was issued by this server: forging one needs the key.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use tidings_engine::Identity;

type HmacSha256 = Hmac<Sha256>;

/// A token that does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not `identity.mac` in hex.
    #[error("malformed token: expected 64 hex digits, a dot, and 64 hex digits")]
    Malformed,
    /// The MAC does not match: not issued by this server (or tampered with).
    #[error("token signature does not verify")]
    Forged,
}

/// Issues and verifies identity tokens.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// 32 random bytes from the operating system.
pub fn random_bytes() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b)
}

impl TokenKey {
    /// A fresh random key (in-memory servers).
    pub fn random() -> std::io::Result<Self> {
        Ok(TokenKey {
            key: random_bytes()?,
        })
    }

    /// The key stored in `dir/identity.key`, created if absent.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("identity.key");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} must hold exactly 32 bytes, found {}",
                            path.display(),
                            bytes.len()
                        ),
                    )
                })?;
                Ok(TokenKey { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let key = random_bytes()?;
                std::fs::write(&path, key)?;
                Ok(TokenKey { key })
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, identity: &Identity) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(&identity.0);
        m.finalize().into_bytes().into()
    }

    /// A token for `identity`.
    pub fn issue(&self, identity: &Identity) -> String {
        format!("{}.{}", hex(&identity.0), hex(&self.mac(identity)))
    }

    /// The identity `token` proves.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let (id, mac) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let id = Identity(unhex::<32>(id).ok_or(TokenError::Malformed)?);
        let mac = unhex::<32>(mac).ok_or(TokenError::Malformed)?;
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.key).map_err(|_| TokenError::Forged)?;
        m.update(&id.0);
        // Constant-time comparison.
        m.verify_slice(&mac).map_err(|_| TokenError::Forged)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_forgeries_do_not() {
        let k = TokenKey::random().expect("key");
        let id = Identity::from_u64(42);
        let t = k.issue(&id);
        assert_eq!(k.verify(&t), Ok(id));
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            k.verify(std::str::from_utf8(&forged).expect("utf8")),
            Err(TokenError::Forged)
        );
        assert_eq!(k.verify("nope"), Err(TokenError::Malformed));
        let other = TokenKey::random().expect("key");
        assert_eq!(
            other.verify(&t),
            Err(TokenError::Forged),
            "another server's token"
        );
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let a = TokenKey::load_or_create(dir.path()).expect("create");
        let b = TokenKey::load_or_create(dir.path()).expect("load");
        let id = Identity::from_u64(1);
        assert_eq!(b.verify(&a.issue(&id)), Ok(id));
    }
}
