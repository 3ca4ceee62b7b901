//! API tokens: generation, hashing, and the in-memory cache every request is checked against.
//!
//! A token reads `sy_<id>_<secret>`: the id (16 hex digits) finds the stored record without
//! touching the secret; the SHA-256 of the secret is compared in constant time. Only hashes are
//! stored. A token supplied through `SWITCHYARD_ADMIN_TOKEN` may have any form: its id is then
//! derived from its hash.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_api_types::Role;
use switchyard_storage::TokenRecord;

/// Who is calling: an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token id.
    pub id: String,
    /// Token name (unique among active tokens).
    pub name: String,
    /// Role.
    pub role: Role,
    /// The environment of an SDK key.
    pub environment: Option<String>,
}

impl Principal {
    /// The actor the audit log records for this principal.
    pub fn actor(&self) -> Actor {
        Actor {
            id: format!("token:{}", self.id),
            name: Some(self.name.clone()),
        }
    }
}

/// Who makes a change, as the audit log records it: a stable id nobody can choose
/// (`token:<id>`, `system`, later `scheduler`, `rollout:<id>`) and what it was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
}

impl Actor {
    /// The server itself (first start, imports at start).
    pub fn system() -> Actor {
        Actor {
            id: "system".to_owned(),
            name: None,
        }
    }
}

#[derive(Debug, Clone)]
struct KnownToken {
    principal: Arc<Principal>,
    hash: [u8; 32],
}

/// All active tokens by id; rebuilt whole when tokens change.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    by_id: HashMap<String, KnownToken>,
}

impl TokenCache {
    /// Builds the cache from stored records, skipping revoked or malformed ones.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a TokenRecord>) -> Self {
        let mut by_id = HashMap::new();
        for r in records.into_iter().filter(|r| r.revoked_at_ms.is_none()) {
            let Some(hash) = hex::decode(&r.secret_hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            else {
                tracing::warn!(token = %r.id, "ignoring a stored token with a malformed hash");
                continue;
            };
            by_id.insert(
                r.id.clone(),
                KnownToken {
                    principal: Arc::new(Principal {
                        id: r.id.clone(),
                        name: r.name.clone(),
                        role: r.role,
                        environment: r.environment.clone(),
                    }),
                    hash,
                },
            );
        }
        Self { by_id }
    }

    /// Checks a presented token: the principal when it is active and its secret matches.
    pub fn verify(&self, token: &str) -> Option<&Arc<Principal>> {
        let (id, secret) = split(token);
        let known = self.by_id.get(id.as_ref())?;
        let digest = Sha256::digest(secret.as_bytes());
        bool::from(digest.as_slice().ct_eq(&known.hash)).then_some(&known.principal)
    }

    /// The active token `id` (for credentials that name it, such as a signed stream URL).
    pub fn get(&self, id: &str) -> Option<&Arc<Principal>> {
        self.by_id.get(id).map(|k| &k.principal)
    }

    /// How many active tokens there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A freshly generated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedToken {
    /// Its public id.
    pub id: String,
    /// The whole token, shown once.
    pub token: String,
    /// The hash of its secret, stored.
    pub secret_hash: String,
}

/// Generates a token from the operating system's random source.
pub fn generate() -> Result<GeneratedToken, getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    Ok(GeneratedToken {
        token: format!("sy_{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    })
}

/// Id and secret hash for a token of any form (used for `SWITCHYARD_ADMIN_TOKEN`).
pub fn identify(token: &str) -> (String, String) {
    let (id, secret) = split(token);
    (id.into_owned(), hash_secret(secret))
}

/// Splits `sy_<id>_<secret>` without allocating; any other form gets an id derived from its
/// hash and the whole token as its secret.
fn split(token: &str) -> (std::borrow::Cow<'_, str>, &str) {
    if let Some(rest) = token.strip_prefix("sy_") {
        if let Some((id, secret)) = rest.split_once('_') {
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return (std::borrow::Cow::Borrowed(id), secret);
            }
        }
    }
    let digest = Sha256::digest(token.as_bytes());
    (
        std::borrow::Cow::Owned(format!("x{}", &hex::encode(digest)[..15])),
        token,
    )
}

/// Signs a stream URL credential for the SDK key `token_id`, valid until `expires` (unix
/// seconds): `v1.<id>.<expires>.<signature>`. Browsers' `EventSource` cannot send headers, so
/// OFREP event streams carry this in their URL instead of the SDK key itself; it names the key
/// (revoking the key ends the credential) and expires.
pub fn sign_stream(key: &[u8; 32], token_id: &str, expires: i64) -> String {
    let payload = format!("v1.{token_id}.{expires}");
    let signature = stream_signature(key, &payload);
    format!("{payload}.{signature}")
}

/// Why a stream credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    /// Not of the form `v1.<id>.<expires>.<signature>`.
    #[error("malformed stream token")]
    Malformed,
    /// The signature does not match (not issued by this deployment).
    #[error("the stream token's signature is invalid")]
    BadSignature,
    /// Past its expiry; fetch the evaluations again for a fresh URL.
    #[error("the stream token has expired; fetch the evaluations again for a new stream URL")]
    Expired,
}

/// Checks a stream credential at `now` (unix seconds); returns the SDK key id it names.
pub fn verify_stream<'t>(
    key: &[u8; 32],
    token: &'t str,
    now: i64,
) -> Result<&'t str, StreamTokenError> {
    let (payload, signature) = token.rsplit_once('.').ok_or(StreamTokenError::Malformed)?;
    let mut parts = payload.split('.');
    let (Some("v1"), Some(id), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(StreamTokenError::Malformed);
    };
    let expires: i64 = expires.parse().map_err(|_| StreamTokenError::Malformed)?;
    let expected = stream_signature(key, payload);
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(StreamTokenError::BadSignature);
    }
    if now > expires {
        return Err(StreamTokenError::Expired);
    }
    Ok(id)
}

fn stream_signature(key: &[u8; 32], payload: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, hash: String, role: Role) -> TokenRecord {
        TokenRecord {
            id: id.to_owned(),
            name: "n".to_owned(),
            role,
            environment: None,
            secret_hash: hash,
            created_at_ms: 0,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn generated_tokens_verify_and_others_do_not() {
        let t = generate().unwrap();
        let cache = TokenCache::new(&[record(&t.id, t.secret_hash.clone(), Role::Editor)]);
        assert_eq!(cache.verify(&t.token).map(|p| p.role), Some(Role::Editor));
        let last = t.token.chars().last().unwrap();
        let tampered = format!(
            "{}{}",
            &t.token[..t.token.len() - 1],
            if last == '0' { '1' } else { '0' }
        );
        assert!(cache.verify(&tampered).is_none());
        assert!(cache.verify("sy_0000000000000000_nope").is_none());
        assert!(cache.verify("").is_none());
    }

    #[test]
    fn free_form_bootstrap_tokens_work() {
        let (id, hash) = identify("a-long-admin-token-from-env");
        let cache = TokenCache::new(&[record(&id, hash, Role::Admin)]);
        assert!(cache.verify("a-long-admin-token-from-env").is_some());
        assert!(cache.verify("a-long-admin-token-from-env!").is_none());
    }

    #[test]
    fn stream_tokens_verify_expire_and_resist_tampering() {
        let key = [7u8; 32];
        let token = sign_stream(&key, "0123456789abcdef", 1_000);
        assert_eq!(verify_stream(&key, &token, 999), Ok("0123456789abcdef"));
        assert_eq!(
            verify_stream(&key, &token, 1_001),
            Err(StreamTokenError::Expired)
        );
        assert_eq!(
            verify_stream(&[8u8; 32], &token, 999),
            Err(StreamTokenError::BadSignature)
        );
        let longer = token.replace(".1000.", ".9999.");
        assert_eq!(
            verify_stream(&key, &longer, 999),
            Err(StreamTokenError::BadSignature)
        );
        assert_eq!(
            verify_stream(&key, "nope", 0),
            Err(StreamTokenError::Malformed)
        );
        assert_eq!(
            verify_stream(&key, "v1.a.b.c", 0),
            Err(StreamTokenError::Malformed)
        );
    }

    #[test]
    fn revoked_tokens_are_not_in_the_cache() {
        let t = generate().unwrap();
        let mut r = record(&t.id, t.secret_hash, Role::Admin);
        r.revoked_at_ms = Some(1);
        assert!(TokenCache::new(&[r]).verify(&t.token).is_none());
    }
}
