//! The web UI's sessions: an API token exchanged at sign-in for a random cookie secret, kept
//! server-side (only its SHA-256 is stored) with its anti-forgery token. A session is as good
//! as the token behind it: revoked, it ends every session opened with it. Sessions end when
//! signed out, when unused for the idle limit, and at the absolute limit whatever happens.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use switchyard_api_types::Role;
use switchyard_storage::SessionRecord;

use crate::{Control, ControlError, Principal, Result};

/// How stale a session's last-use time may be before a request refreshes it: a session used
/// continuously is written once a minute, not on every request.
const TOUCH_EVERY_MS: i64 = 60_000;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ended when unused this long (ms).
    pub idle_ms: i64,
    /// Ended this long after sign-in, used or not (ms).
    pub absolute_ms: i64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle_ms: 30 * 60_000,
            absolute_ms: 12 * 3_600_000,
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who is signed in (the token's principal).
    pub principal: Arc<Principal>,
    /// The anti-forgery token every state-changing request must carry.
    pub csrf: String,
}

/// A session just opened: the cookie secret (given to the browser once) and the session.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The cookie's value.
    pub cookie: String,
    /// The session.
    pub session: Session,
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ControlError::Internal(format!("no random source: {e}")))?;
    Ok(hex::encode(bytes))
}

fn hash_cookie(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

impl Control {
    /// Signs in with an API token (admin, editor or viewer; SDK keys only evaluate): a new
    /// session, stored for every replica.
    pub async fn open_session(&self, token: &str, now_ms: i64) -> Result<OpenedSession> {
        let principal = self
            .snapshot_guard()
            .token_cache()
            .verify(token.trim())
            .cloned()
            .ok_or_else(|| ControlError::bad_request(Some("token"), "unknown or revoked token"))?;
        if principal.role == Role::Sdk {
            return Err(ControlError::bad_request(
                Some("token"),
                "an SDK key only evaluates flags; sign in with an admin, editor or viewer token",
            ));
        }
        let cookie = random_hex()?;
        let csrf = random_hex()?;
        let record = SessionRecord {
            token_id: principal.id.clone(),
            csrf: csrf.clone(),
            created_at_ms: now_ms,
            last_seen_ms: now_ms,
        };
        self.require_store()?
            .create_session(&hash_cookie(&cookie), &record)
            .await?;
        tracing::info!(token = %principal.id, name = %principal.name, "ui sign-in");
        Ok(OpenedSession {
            cookie,
            session: Session { principal, csrf },
        })
    }

    /// The live session a cookie names, if any: expired ones are ended here, and one whose
    /// token was revoked is refused.
    pub async fn session(
        &self,
        cookie: &str,
        limits: SessionLimits,
        now_ms: i64,
    ) -> Result<Option<Session>> {
        let store = self.require_store()?;
        let id_hash = hash_cookie(cookie);
        let Some(record) = store.session(&id_hash).await? else {
            return Ok(None);
        };
        let idle = now_ms - record.last_seen_ms > limits.idle_ms;
        let old = now_ms - record.created_at_ms > limits.absolute_ms;
        let principal = self
            .snapshot_guard()
            .token_cache()
            .get(&record.token_id)
            .cloned();
        let Some(principal) = principal.filter(|_| !idle && !old) else {
            store.delete_session(&id_hash).await?;
            return Ok(None);
        };
        if now_ms - record.last_seen_ms > TOUCH_EVERY_MS {
            store.touch_session(&id_hash, now_ms).await?;
        }
        Ok(Some(Session {
            principal,
            csrf: record.csrf,
        }))
    }

    /// Signs out: the session ends on every replica. Whether there was one.
    pub async fn close_session(&self, cookie: &str) -> Result<bool> {
        Ok(self
            .require_store()?
            .delete_session(&hash_cookie(cookie))
            .await?)
    }

    /// Whether the session a cookie names is still open (signed in, not expired, its token
    /// active), without counting the question as activity: what a long-lived stream opened by
    /// the session asks now and then, so that signing out (on any replica) ends it while an
    /// open page alone does not keep the session alive past its idle limit.
    pub async fn session_is_open(
        &self,
        cookie: &str,
        limits: SessionLimits,
        now_ms: i64,
    ) -> Result<bool> {
        let Some(record) = self.require_store()?.session(&hash_cookie(cookie)).await? else {
            return Ok(false);
        };
        let fresh = now_ms - record.last_seen_ms <= limits.idle_ms
            && now_ms - record.created_at_ms <= limits.absolute_ms;
        Ok(fresh
            && self
                .snapshot_guard()
                .token_cache()
                .get(&record.token_id)
                .is_some())
    }

    /// Ends every session idle past the limit (a periodic sweep; lookups end them too).
    pub async fn purge_sessions(&self, limits: SessionLimits, now_ms: i64) -> Result<u64> {
        Ok(self
            .require_store()?
            .delete_idle_sessions(now_ms - limits.idle_ms)
            .await?)
    }
}
