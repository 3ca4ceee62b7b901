//! Authentication and authorization, in one place. The route table (`crate::ROUTES`) says who
//! may call each route; [`guard`] — run by the edge layer for every route of that table, with
//! the access `crate::access_of` finds for it — authenticates
//! the caller and checks its role before the handler runs, so no body is read (or parsed)
//! for a caller who may not make the call. Handlers receive the caller as a [`Caller`].
//!
//! Tokens are `sy_<id>_<secret>` (see `switchyard_control::tokens`); they are checked against
//! the served snapshot's token cache in constant time, without touching the database.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use switchyard_api_types::Role;
pub use switchyard_control::Principal;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, metrics, the OpenAPI document).
    Public,
    /// A token whose role satisfies this one (see [`Role::satisfies`]).
    Role(Role),
    /// A signed stream URL (`?token=`, minted for an SDK key by a bulk OFREP response):
    /// browsers' `EventSource` cannot send headers.
    SignedStreamUrl,
}

impl Access {
    /// The table's word for it: `none`, or the role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "none",
            Access::Role(role) => role.as_str(),
            Access::SignedStreamUrl => "sdk",
        }
    }
}

/// The authenticated caller of a guarded route.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::internal(std::io::Error::other(
                "a handler asked for the caller of a route the table does not guard",
            ))
        })
    }
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

/// The web UI's session cookie (HttpOnly, SameSite=Strict; see `crate::ui`).
pub const SESSION_COOKIE: &str = "sy_session";
/// The header carrying a session's anti-forgery token on every state-changing request.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then_some(value)
        })
}

/// The principal behind a session cookie, for a route needing `needed`. A state-changing
/// request must carry the session's anti-forgery token and must not come from another site
/// (the cookie is `SameSite=Strict` too; this is the second lock).
pub async fn session_principal(
    state: &AppState,
    cookie: &str,
    method: &axum::http::Method,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Arc<Principal>, Response> {
    let session = state
        .control
        .session(cookie, state.settings.sessions, crate::now_millis())
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(|| Denied::SessionEnded.into_admin_error())?;
    if !method.is_safe() {
        let sent = headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        let matches: bool = subtle::ConstantTimeEq::ct_eq(sent, session.csrf.as_bytes()).into();
        if !matches || cross_site {
            return Err(Denied::Forgery.into_admin_error());
        }
    }
    let principal = session.principal;
    if !principal.role.satisfies(needed) {
        return Err(Denied::Role {
            has: principal.role,
            needs: needed,
        }
        .into_admin_error());
    }
    Ok(principal)
}

/// Why a caller was turned away before the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token.
    Missing,
    /// Unknown, malformed or revoked token.
    Invalid,
    /// The token's role may not do this.
    Role {
        /// The caller's role.
        has: Role,
        /// The role the route needs.
        needs: Role,
    },
    /// A web UI session cookie that names no live session.
    SessionEnded,
    /// A state-changing request with a session cookie but without its anti-forgery token
    /// (or from another site).
    Forgery,
    /// An SDK key that has used its request budget.
    RateLimited {
        /// Seconds until it may retry.
        retry_after_secs: u64,
    },
}

impl Denied {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Denied::Missing | Denied::Invalid | Denied::SessionEnded => StatusCode::UNAUTHORIZED,
            Denied::Role { .. } | Denied::Forgery => StatusCode::FORBIDDEN,
            Denied::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A sentence for the caller.
    pub fn message(self) -> String {
        match self {
            Denied::Missing => {
                "missing token: send `Authorization: Bearer <token>` or `X-API-Key: <token>`".into()
            }
            Denied::Invalid => "invalid or revoked token".into(),
            Denied::SessionEnded => "your session has ended (signed out, unused too long, or its token was revoked); sign in again".into(),
            Denied::Forgery => format!("a change made with a session cookie needs the session's {CSRF_HEADER} header and must come from this site"),
            Denied::Role {
                has: Role::Sdk,
                needs,
            } => format!(
                "an sdk key only evaluates flags; this needs a token with the {needs} role"
            ),
            Denied::Role {
                has,
                needs: Role::Sdk,
            } => format!(
                "this endpoint needs an SDK key (role sdk), which selects the environment; {} {has} token cannot use it",
                article(has)
            ),
            Denied::Role { has, needs } => format!(
                "{} {has} token cannot do this; it needs the {needs} role",
                article(has)
            ),
            Denied::RateLimited { .. } => "rate limit exceeded".into(),
        }
    }

    fn into_admin_error(self) -> Response {
        let code = match self {
            Denied::Missing | Denied::Invalid | Denied::SessionEnded => ErrorCode::Unauthorized,
            Denied::Role { .. } | Denied::Forgery => ErrorCode::Forbidden,
            Denied::RateLimited { .. } => ErrorCode::RateLimited,
        };
        ApiError::new(code, self.message()).into_response()
    }
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Admin | Role::Editor => "an",
        Role::Viewer | Role::Sdk => "a",
    }
}

/// Checks a presented token against the served tokens and `needed`.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    needed: Role,
) -> Result<Arc<Principal>, Denied> {
    let token = presented(headers).ok_or(Denied::Missing)?;
    let snapshot = state.control.snapshot_guard();
    let principal = snapshot
        .token_cache()
        .verify(token)
        .cloned()
        .ok_or(Denied::Invalid)?;
    if !principal.role.satisfies(needed) {
        return Err(Denied::Role {
            has: principal.role,
            needs: needed,
        });
    }
    if needed == Role::Sdk {
        if let Some(limiter) = &state.limiter {
            if let Err(not_until) = limiter.check_key(&principal.id) {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(Denied::RateLimited {
                    retry_after_secs: secs.max(1),
                });
            }
        }
    }
    Ok(principal)
}

/// The SDK key a signed stream URL names, if the signature, the expiry and the key check out.
fn stream_principal(state: &AppState, query: Option<&str>) -> Result<Arc<Principal>, Denied> {
    let token = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .ok_or(Denied::Missing)?;
    let key = state.control.stream_key().ok_or(Denied::Invalid)?;
    let id = switchyard_control::tokens::verify_stream(key, token, crate::now_secs())
        .map_err(|_| Denied::Invalid)?;
    let snapshot = state.control.snapshot_guard();
    let principal = snapshot
        .token_cache()
        .get(id)
        .cloned()
        .ok_or(Denied::Invalid)?;
    if principal.role != Role::Sdk {
        return Err(Denied::Invalid);
    }
    Ok(principal)
}

/// The guard every route of the table gets: authenticates and authorizes before the
/// handler runs, and renders a refusal in the route's own error shape (OFREP's for OFREP).
pub async fn guard(state: AppState, access: Access, mut request: Request, next: Next) -> Response {
    let needed = match access {
        Access::Public => return next.run(request).await,
        Access::Role(needed) => needed,
        Access::SignedStreamUrl => {
            return match stream_principal(&state, request.uri().query()) {
                Ok(principal) => {
                    request.extensions_mut().insert(Caller(principal));
                    next.run(request).await
                }
                Err(denied) => crate::ofrep::refusal(denied, None),
            };
        }
    };
    if needed != Role::Sdk && presented(request.headers()).is_none() {
        if let Some(cookie) = session_cookie(request.headers()) {
            let cookie = cookie.to_owned();
            return match session_principal(
                &state,
                &cookie,
                request.method(),
                request.headers(),
                needed,
            )
            .await
            {
                Ok(principal) => {
                    request.extensions_mut().insert(Caller(principal));
                    next.run(request).await
                }
                Err(refusal) => refusal,
            };
        }
    }
    match authenticate(&state, request.headers(), needed) {
        Ok(principal) => {
            request.extensions_mut().insert(Caller(principal));
            next.run(request).await
        }
        Err(denied) if request.uri().path().starts_with("/ofrep/") => {
            let path = request.uri().path();
            let key = path
                .strip_prefix("/ofrep/v1/evaluate/flags/")
                .filter(|k| !k.is_empty());
            crate::ofrep::refusal(denied, key)
        }
        Err(denied) => denied.into_admin_error(),
    }
}
