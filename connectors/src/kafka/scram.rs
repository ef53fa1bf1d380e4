//! The client side of SCRAM (RFC 5802) for Kafka's SASL/SCRAM-SHA-256 and
//! -512: the client-first message, the proof from the salted password, and
//! the check of the server's signature.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
            let mut m = <M as Mac>::new_from_slice(key).map_err(|e| e.to_string())?;
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }
        match self {
            Hash::Sha256 => mac::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Result<Vec<u8>, String> {
        let fail = |e: hmac::digest::InvalidLength| format!("PBKDF2: {e}");
        match self {
            Hash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out).map_err(fail)?;
                Ok(out)
            }
            Hash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, iterations, &mut out).map_err(fail)?;
                Ok(out)
            }
        }
    }
}

/// Runs the exchange through `step` (send these bytes, get the answer).
pub(crate) fn run(
    hash: Hash,
    user: &str,
    password: &str,
    step: &mut dyn FnMut(Vec<u8>) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let nonce = sluice::transport::random_hex(18).map_err(|e| e.to_string())?;
    let user = user.replace('=', "=3D").replace(',', "=2C");
    let client_first_bare = format!("n={user},r={nonce}");
    let server_first = String::from_utf8(step(format!("n,,{client_first_bare}").into_bytes())?)
        .map_err(|_| "the server's first message is not UTF-8".to_string())?;
    let attr = |name: &str| {
        server_first
            .split(',')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| format!("the server's first message has no '{name}'"))
    };
    let server_nonce = attr("r")?;
    if !server_nonce.starts_with(&nonce) {
        return Err("the server's nonce does not extend ours".into());
    }
    let salt = B64.decode(attr("s")?).map_err(|e| format!("bad salt: {e}"))?;
    let iterations: u32 = attr("i")?.parse().map_err(|_| "bad iteration count".to_string())?;
    if !(4096..=1_000_000).contains(&iterations) {
        return Err(format!("iteration count {iterations} is out of range"));
    }
    let salted = hash.salted_password(password.as_bytes(), &salt, iterations)?;
    let hmac = |key: &[u8], data: &[u8]| hash.hmac(key, data);
    let client_key = hmac(&salted, b"Client Key")?;
    let stored_key = hash.digest(&client_key);
    let client_final_without_proof = format!("c=biws,r={server_nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{client_final_without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes())?;
    let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
    let server_final =
        String::from_utf8(step(format!("{client_final_without_proof},p={}", B64.encode(proof)).into_bytes())?)
            .map_err(|_| "the server's final message is not UTF-8".to_string())?;
    let server_key = hmac(&salted, b"Server Key")?;
    let expected = B64.encode(hmac(&server_key, auth_message.as_bytes())?);
    match server_final.strip_prefix("v=") {
        Some(v) if v == expected => Ok(()),
        Some(_) => Err("the server's signature is wrong (not the broker we asked?)".into()),
        None => Err(format!("the server refused: {server_final}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that knows the password (computing its side as RFC 5802
    /// says) accepts our proof, and we accept its signature; with another
    /// password the exchange fails.
    #[test]
    fn a_server_with_the_password_accepts_the_proof() {
        let password = "pencil";
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap_or_default();
        let mut client_first = String::new();
        let mut server_first = String::new();
        let mut step = |msg: Vec<u8>| -> Result<Vec<u8>, String> {
            let text = String::from_utf8(msg).unwrap_or_default();
            if let Some(bare) = text.strip_prefix("n,,") {
                client_first = bare.to_string();
                let nonce = bare.split(",r=").nth(1).unwrap_or_default().to_string();
                server_first = format!("r={nonce}srv,s={},i=4096", B64.encode(&salt));
                return Ok(server_first.clone().into_bytes());
            }
            let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof")?;
            let mut salted = [0u8; 32];
            pbkdf2::pbkdf2::<Hmac<sha2::Sha256>>(password.as_bytes(), &salt, 4096, &mut salted)
                .map_err(|e| e.to_string())?;
            let mac = |k: &[u8], d: &[u8]| {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(k).map_err(|e| e.to_string())?;
                m.update(d);
                Ok::<Vec<u8>, String>(m.finalize().into_bytes().to_vec())
            };
            let auth = format!("{client_first},{server_first},{without_proof}");
            let client_key = mac(&salted, b"Client Key")?;
            let stored = Hash::Sha256.digest(&client_key);
            let sig = mac(&stored, auth.as_bytes())?;
            let expected: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            if B64.decode(proof).map_err(|e| e.to_string())? != expected {
                return Ok(b"e=invalid-proof".to_vec());
            }
            let server_key = mac(&salted, b"Server Key")?;
            Ok(format!("v={}", B64.encode(mac(&server_key, auth.as_bytes())?)).into_bytes())
        };
        assert_eq!(run(Hash::Sha256, "user", password, &mut step), Ok(()));
        let wrong = run(Hash::Sha256, "user", "not the password", &mut step);
        assert!(wrong.is_err(), "{wrong:?}");
    }
}
