//! The formats of generated secrets: how each kind is made from the OS random source, and
//! how an existing file of that kind is recognised as well-formed.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::Generate as _;

/// The format of one generated secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// 32 characters from `[A-Za-z0-9]`.
    Rand32,
    /// 32 random bytes as 64 lowercase hex characters.
    Hex32,
    /// An RSA 4096-bit private key, PKCS#8 DER.
    Rsa4096,
    /// A P-256 (prime256v1) private key, PKCS#8 DER.
    EcdsaP256,
    /// Synapse's signing key line: `ed25519 <key id> <unpadded base64 seed>\n`.
    SynapseSigningKey,
}

/// Making a secret failed; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the OS random source failed: {0}")]
    Random(getrandom::Error),
    #[error("generating the RSA key failed: {0}")]
    Rsa(rsa::Error),
    #[error("encoding the key as PKCS#8 failed: {0}")]
    Encode(p256::pkcs8::Error),
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl SecretKind {
    /// A fresh secret of this kind, from the OS random source.
    pub fn generate(self) -> Result<Vec<u8>, GenerateError> {
        match self {
            SecretKind::Rand32 => random_alphanumeric(32).map(String::into_bytes),
            SecretKind::Hex32 => {
                let bytes = random_bytes::<32>()?;
                Ok(bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes())
            }
            SecretKind::Rsa4096 => {
                let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 4096)
                    .map_err(GenerateError::Rsa)?;
                Ok(key
                    .to_pkcs8_der()
                    .map_err(GenerateError::Encode)?
                    .as_bytes()
                    .to_vec())
            }
            SecretKind::EcdsaP256 => {
                let key = p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng)
                    .map_err(GenerateError::Random)?;
                Ok(key
                    .to_pkcs8_der()
                    .map_err(GenerateError::Encode)?
                    .as_bytes()
                    .to_vec())
            }
            SecretKind::SynapseSigningKey => {
                let key = SigningKey::try_generate_from_rng(&mut getrandom::SysRng)
                    .map_err(GenerateError::Random)?;
                // Synapse's own ids are `a_` and four characters; a fixed id (such as `0`)
                // would make every deployment's key id the same.
                let key_id = format!("a_{}", random_alphanumeric(4)?);
                let seed = STANDARD_NO_PAD.encode(key.to_bytes());
                Ok(format!("ed25519 {key_id} {seed}\n").into_bytes())
            }
        }
    }

    /// Whether `contents` is a usable secret of this kind; the error says what was expected
    /// and never quotes the contents.
    pub fn check(self, contents: &[u8]) -> Result<(), String> {
        match self {
            SecretKind::Rand32 => {
                let ok = contents.len() >= 16 && contents.iter().all(|b| b.is_ascii_graphic());
                ok.then_some(()).ok_or_else(|| {
                    "expected at least 16 printable ASCII characters without spaces or newlines"
                        .into()
                })
            }
            SecretKind::Hex32 => {
                let ok = contents.len() == 64 && contents.iter().all(u8::is_ascii_hexdigit);
                ok.then_some(())
                    .ok_or_else(|| "expected exactly 64 hex characters".into())
            }
            SecretKind::Rsa4096 => {
                let key = rsa::PrivateKey::from_pkcs8_der(contents)
                    .or_else(|_| {
                        let pem = std::str::from_utf8(contents).map_err(|_| ())?;
                        rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|_| ())
                    })
                    .map_err(|_| {
                        "expected an RSA private key in PKCS#8 (DER or PEM)".to_string()
                    })?;
                if key.size() * 8 < 2048 {
                    return Err(format!(
                        "expected an RSA key of at least 2048 bits, got {}",
                        key.size() * 8
                    ));
                }
                Ok(())
            }
            SecretKind::EcdsaP256 => p256::SecretKey::from_pkcs8_der(contents)
                .map(|_| ())
                .or_else(|_| {
                    let pem = std::str::from_utf8(contents).map_err(|_| ())?;
                    p256::SecretKey::from_pkcs8_pem(pem)
                        .map(|_| ())
                        .map_err(|_| ())
                })
                .map_err(|_| "expected a P-256 private key in PKCS#8 (DER or PEM)".into()),
            SecretKind::SynapseSigningKey => check_signing_key(contents),
        }
    }
}

fn check_signing_key(contents: &[u8]) -> Result<(), String> {
    let expected = || "expected one line `ed25519 <key id> <base64 seed>`".to_string();
    let text = std::str::from_utf8(contents).map_err(|_| expected())?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    let fields: Vec<&str> = line.split(' ').collect();
    let [algorithm, key_id, seed] = fields[..] else {
        return Err(expected());
    };
    if algorithm != "ed25519" || line.contains('\n') {
        return Err(expected());
    }
    if key_id.is_empty()
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err("expected a key id of letters, digits and `_`".into());
    }
    if key_id == "0" {
        return Err("key id `0` is the id of the chart's once-shared key (CVE-2026-24044)".into());
    }
    let seed = STANDARD_NO_PAD
        .decode(seed)
        .or_else(|_| STANDARD.decode(seed))
        .map_err(|_| "expected the seed in base64".to_string())?;
    if seed.len() != 32 {
        return Err(format!("expected a 32-byte seed, got {} bytes", seed.len()));
    }
    Ok(())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], GenerateError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(GenerateError::Random)?;
    Ok(bytes)
}

/// `len` characters from [`ALPHANUMERIC`], uniformly: bytes at or above the largest
/// multiple of 62 are drawn again rather than folded (which would favour some letters).
fn random_alphanumeric(len: usize) -> Result<String, GenerateError> {
    const LIMIT: u8 = (256 / ALPHANUMERIC.len() * ALPHANUMERIC.len()) as u8;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>()? {
            if b < LIMIT && out.len() < len {
                out.push(ALPHANUMERIC[usize::from(b) % ALPHANUMERIC.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, Verifier};

    #[test]
    fn rand32_is_32_alphanumerics_and_differs_each_time() {
        let a = SecretKind::Rand32.generate().unwrap();
        let b = SecretKind::Rand32.generate().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b);
    }

    #[test]
    fn hex32_is_64_lowercase_hex() {
        let h = SecretKind::Hex32.generate().unwrap();
        assert_eq!(h.len(), 64);
        assert!(h
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
    }

    #[test]
    fn the_signing_key_line_signs_and_verifies() {
        let line = SecretKind::SynapseSigningKey.generate().unwrap();
        SecretKind::SynapseSigningKey.check(&line).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with('\n') && !text.contains('='));
        let seed = STANDARD_NO_PAD
            .decode(text.trim_end().split(' ').nth(2).unwrap())
            .unwrap();
        let key = SigningKey::from_bytes(&seed.try_into().unwrap());
        let signature = key.sign(b"message");
        key.verifying_key().verify(b"message", &signature).unwrap();
    }

    #[test]
    fn p256_keys_round_trip_through_pkcs8() {
        let der = SecretKind::EcdsaP256.generate().unwrap();
        SecretKind::EcdsaP256.check(&der).unwrap();
    }

    #[test]
    fn malformed_contents_are_recognised() {
        assert!(SecretKind::Rand32.check(b"short").is_err());
        assert!(SecretKind::Rand32
            .check(b"0123456789abcdef0123456789abcdef\n")
            .is_err());
        assert!(SecretKind::Hex32.check(&[b'g'; 64]).is_err());
        assert!(SecretKind::Rsa4096.check(b"not a key").is_err());
        assert!(SecretKind::EcdsaP256.check(b"not a key").is_err());
        assert!(SecretKind::SynapseSigningKey
            .check(b"ed25519 0 AAAA\n")
            .is_err());
        assert!(SecretKind::SynapseSigningKey
            .check(b"ed25519 a_x c2hvcnQ\n")
            .is_err());
    }

    #[test]
    fn check_errors_never_quote_the_contents() {
        let err = SecretKind::Hex32.check(b"secretvalue").unwrap_err();
        assert!(!err.contains("secretvalue"));
    }
}
