//! Tokens: generation, hashing, constant-time checks, and roles.
//!
//! A token reads `sy_<id>_<secret>`: the id (16 hex digits) finds the stored record without
//! touching the secret; the SHA-256 of the secret is compared in constant time. Only hashes are
//! stored. A token supplied through `SWITCHYARD_ADMIN_TOKEN` may have any form: its id is then
//! derived from its hash.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorCode};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Evaluate flags of one environment (OFREP).
    Sdk,
    /// Read the admin API.
    Viewer,
    /// Also change flags, segments and environments.
    Editor,
    /// Also manage tokens.
    Admin,
}

impl Role {
    /// Parses `admin`, `editor`, `viewer` or `sdk`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            "sdk" => Some(Role::Sdk),
            _ => None,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Sdk => "sdk",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token id.
    pub id: String,
    /// Token name (recorded as the actor in the audit log).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Environment of an SDK key.
    pub environment: Option<String>,
}

/// A token known to the server (from the store), without its secret.
#[derive(Debug, Clone)]
pub struct KnownToken {
    principal: Arc<Principal>,
    hash: [u8; 32],
}

/// All active tokens by id, swapped whole when tokens change.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    by_id: HashMap<String, KnownToken>,
}

impl TokenCache {
    /// Builds the cache from stored records, skipping revoked or malformed ones.
    pub fn new(records: &[switchyard_storage::TokenRecord]) -> Self {
        let mut by_id = HashMap::new();
        for r in records.iter().filter(|r| r.revoked_at_ms.is_none()) {
            let (Some(role), Ok(bytes)) =
                (Role::parse(r.role.as_str()), hex::decode(&r.secret_hash))
            else {
                tracing::warn!(token = %r.id, "ignoring a stored token with an unknown role or hash");
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                continue;
            };
            by_id.insert(
                r.id.clone(),
                KnownToken {
                    principal: Arc::new(Principal {
                        id: r.id.clone(),
                        name: r.name.clone(),
                        role,
                        environment: r.environment.clone(),
                    }),
                    hash,
                },
            );
        }
        Self { by_id }
    }

    /// Checks a presented token.
    pub fn verify(&self, token: &str) -> Option<&Arc<Principal>> {
        let (id, secret) = split(token);
        let known = self.by_id.get(&id)?;
        let digest = Sha256::digest(secret.as_bytes());
        bool::from(digest.as_slice().ct_eq(&known.hash)).then_some(&known.principal)
    }
}

/// A freshly generated token: `(id, full token, secret hash)`.
pub fn generate() -> Result<(String, String, String), getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex::encode(id);
    let secret = hex::encode(secret);
    let token = format!("sy_{id}_{secret}");
    Ok((id, token, hash_secret(&secret)))
}

/// Id and secret hash for a token of any form (used for `SWITCHYARD_ADMIN_TOKEN`).
pub fn identify(token: &str) -> (String, String) {
    let (id, secret) = split(token);
    (id, hash_secret(&secret))
}

fn split(token: &str) -> (String, String) {
    if let Some(rest) = token.strip_prefix("sy_") {
        if let Some((id, secret)) = rest.split_once('_') {
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return (id.to_owned(), secret.to_owned());
            }
        }
    }
    let digest = Sha256::digest(token.as_bytes());
    (format!("x{}", &hex::encode(digest)[..15]), token.to_owned())
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The presented token: `Authorization: Bearer …` or `X-API-Key: …`.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(token.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Authenticates and checks the role: 401 without a valid token, 403 with too small a role.
pub fn authorize(
    cache: &TokenCache,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Arc<Principal>, ApiError> {
    let Some(token) = presented(headers) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing token: send `Authorization: Bearer <token>` or `X-API-Key: <token>`",
        ));
    };
    let Some(principal) = cache.verify(token) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "invalid or revoked token",
        ));
    };
    let allowed = match needed {
        Role::Sdk => principal.role == Role::Sdk,
        _ => principal.role != Role::Sdk && principal.role >= needed,
    };
    if !allowed {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} {} token cannot do this; it needs the {} role",
                if matches!(principal.role, Role::Admin | Role::Editor) {
                    "an"
                } else {
                    "a"
                },
                principal.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(Arc::clone(principal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_storage::TokenRecord;

    fn record(id: &str, hash: String, role: &str) -> TokenRecord {
        TokenRecord {
            id: id.to_owned(),
            name: "n".to_owned(),
            role: switchyard_storage::Role::parse(role).unwrap(),
            environment: None,
            secret_hash: hash,
            created_at_ms: 0,
            revoked_at_ms: None,
        }
    }

    #[test]
    fn generated_tokens_verify_and_others_do_not() {
        let (id, token, hash) = generate().unwrap();
        let cache = TokenCache::new(&[record(&id, hash, "editor")]);
        assert_eq!(cache.verify(&token).map(|p| p.role), Some(Role::Editor));
        let tampered = format!("{}0", &token[..token.len() - 1]);
        assert!(cache.verify(&tampered).is_none() || token.ends_with('0'));
        assert!(cache.verify("sy_0000000000000000_nope").is_none());
        assert!(cache.verify("").is_none());
    }

    #[test]
    fn free_form_bootstrap_tokens_work() {
        let (id, hash) = identify("a-long-admin-token-from-env");
        let cache = TokenCache::new(&[record(&id, hash, "admin")]);
        assert!(cache.verify("a-long-admin-token-from-env").is_some());
        assert!(cache.verify("a-long-admin-token-from-env!").is_none());
    }

    #[test]
    fn roles_are_ordered_and_sdk_is_separate() {
        let (id, token, hash) = generate().unwrap();
        let cache = TokenCache::new(&[record(&id, hash, "viewer")]);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(authorize(&cache, &headers, Role::Viewer).is_ok());
        assert_eq!(
            authorize(&cache, &headers, Role::Editor).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            authorize(&cache, &headers, Role::Sdk).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert_eq!(
            authorize(&cache, &HeaderMap::new(), Role::Viewer)
                .unwrap_err()
                .code,
            ErrorCode::Unauthorized
        );
    }
}
