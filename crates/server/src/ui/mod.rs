//! The web admin UI at `/ui`, served by the binary itself: no Node.js to build or run it, no
//! request to any other host. The server renders the sign-in page and the page shell (who is
//! signed in, the navigation, the session's anti-forgery token); a hand-written script
//! (`assets/app.js`) draws each page from the admin API the CLI uses, so every action in the
//! UI is the same control-layer operation, audited the same way.
//!
//! Sign-in exchanges an API token for a server-side session (`crate::auth::SESSION_COOKIE`:
//! HttpOnly, SameSite=Strict, Secure behind TLS); the token itself never reaches a URL, a log
//! or the page. Every state-changing API call made with the cookie must carry the session's
//! anti-forgery token (`X-CSRF-Token`), and the API's CORS never allows credentials, so no
//! other origin can act with a session. Pages forbid inline scripts and framing (CSP).

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use switchyard_api_types::admin::Whoami;
use switchyard_control::Session;

use crate::auth::{presented, session_cookie, Caller, SESSION_COOKIE};
use crate::state::AppState;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// A fingerprint of the assets, in their URLs: a new binary's assets are never read from a
/// stale cache, and unchanged ones are cached for good.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let hash = [APP_JS, APP_CSS]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, text| {
            text.bytes()
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        });
    format!("{hash:016x}")
});

/// The content security policy of every page: scripts, styles and connections from this
/// server only, nothing inline, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes (outside the API's route table: they are pages, not API).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/{*rest}", get(page))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn head(title: &str) -> String {
    let v = ASSET_VERSION.as_str();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/app.css?v={v}\">",
        escape(title)
    )
}

/// The sign-in page (`error`: why the last attempt failed).
fn login_page(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    html(
        status,
        format!(
            "{head}</head><body class=\"login\"><main class=\"card narrow\">\
             <h1><span class=\"logo\" aria-hidden=\"true\">⇄</span> Switchyard</h1>\
             <p>Sign in with an API token (admin, editor or viewer). It is exchanged for a \
             session here and never stored in the browser.</p>{error}\
             <form method=\"post\" action=\"/ui/login\">\
             <label for=\"token\">API token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus \
             placeholder=\"sy_…\">\
             <input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <button type=\"submit\" class=\"primary\">Sign in</button></form>\
             <p class=\"muted small\">No token? The first start printed an admin token; \
             <code>switchyard tokens create NAME --role viewer</code> makes more.</p>\
             </main></body></html>",
            head = head("Sign in · Switchyard"),
            next = escape(next),
        ),
    )
}

/// The shell every signed-in page starts from; the script draws the page.
fn shell(session: &Session) -> Response {
    let p = &session.principal;
    let role = p.role.as_str();
    let v = ASSET_VERSION.as_str();
    let links = [
        ("/ui/flags", "Flags"),
        ("/ui/segments", "Segments"),
        ("/ui/experiments", "Experiments"),
        ("/ui/rollouts", "Rollouts"),
        ("/ui/schedules", "Schedules"),
        ("/ui/requests", "Approvals"),
        ("/ui/audit", "Audit log"),
        ("/ui/reports", "Reports"),
        ("/ui/settings", "Settings"),
    ]
    .iter()
    .map(|(href, label)| format!("<a href=\"{href}\">{label}</a>"))
    .collect::<String>();
    html(
        StatusCode::OK,
        format!(
            "{head}<meta name=\"csrf-token\" content=\"{csrf}\">\
             <script src=\"/ui/assets/app.js?v={v}\" defer></script></head>\
             <body data-role=\"{role}\" data-user=\"{name}\">\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header class=\"top\"><a class=\"brand\" href=\"/ui/flags\"><span class=\"logo\" aria-hidden=\"true\">⇄</span> Switchyard</a>\
             <nav aria-label=\"Main\">{links}</nav>\
             <div class=\"who\"><span class=\"live\" id=\"live\" title=\"Live updates\">●</span> \
             <span>{name}</span> <span class=\"badge role-{role}\">{role}</span>\
             <form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" class=\"link\">Sign out</button></form></div></header>\
             <main id=\"main\" tabindex=\"-1\"><p class=\"muted\">Loading…</p></main>\
             <div id=\"toast\" role=\"status\" aria-live=\"polite\"></div>\
             <noscript><p class=\"error\">The Switchyard UI needs JavaScript.</p></noscript>\
             </body></html>",
            head = head("Switchyard"),
            csrf = escape(&session.csrf),
            name = escape(&p.name),
        ),
    )
}

/// The signed-in session of a page request, if any (a store error counts as none, logged).
async fn current_session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookie = session_cookie(headers)?;
    match state
        .control
        .session(cookie, state.settings.sessions, crate::now_millis())
        .await
    {
        Ok(session) => session,
        Err(err) => {
            tracing::warn!(error = %err, "a ui session could not be read");
            None
        }
    }
}

/// `GET /ui…`: the page shell when signed in, else the sign-in page.
async fn page(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    match current_session(&state, &headers).await {
        Some(session) => shell(&session),
        None => {
            let next = uri.path_and_query().map_or("/ui", |p| p.as_str());
            login_page(StatusCode::OK, None, next)
        }
    }
}

/// `GET /ui/assets/{file}`.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A form posted from another site (login forgery: signing someone in as the attacker).
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (
        headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()),
        host,
    ) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            origin_host != host
        }
        _ => false,
    }
}

/// Whether the browser reached us over TLS (directly, or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie_header(value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("sy_session=; Path=/; Max-Age=0"))
}

/// Where to go after signing in: a page of the UI, nothing else (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/ui",
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /ui/login`: a token for a session.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    if cross_site(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("sign in from this server's own page"),
            &next,
        );
    }
    match state
        .control
        .open_session(&form.token, crate::now_millis())
        .await
    {
        Ok(opened) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie_header(
                    &opened.cookie,
                    state.settings.sessions.absolute_ms / 1000,
                    over_tls(&headers),
                ),
            );
            response
        }
        Err(switchyard_control::ControlError::BadRequest { message, .. }) => {
            login_page(StatusCode::UNAUTHORIZED, Some(&message), &next)
        }
        Err(err) => {
            tracing::warn!(error = %err, "ui sign-in failed");
            login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&format!("cannot sign in right now: {err}")),
                &next,
            )
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /ui/logout`: ends the session everywhere.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(session) = current_session(&state, &headers).await {
        // Only the page's own form (with the session's token) signs out.
        if form.csrf.as_deref() != Some(session.csrf.as_str()) || cross_site(&headers) {
            return (
                StatusCode::FORBIDDEN,
                "sign out from this server's own page\n",
            )
                .into_response();
        }
        if let Some(cookie) = session_cookie(&headers) {
            if let Err(err) = state.control.close_session(cookie).await {
                tracing::warn!(error = %err, "ui sign-out failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot sign out right now: {err}\n"),
                )
                    .into_response();
            }
        }
    }
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header("", 0, over_tls(&headers)),
    );
    response
}

/// `GET /api/v1/session`: who is calling.
pub async fn whoami(Caller(caller): Caller, headers: HeaderMap) -> Json<Whoami> {
    Json(Whoami {
        token_id: caller.id.clone(),
        name: caller.name.clone(),
        role: caller.role,
        via: if presented(&headers).is_some() {
            "token"
        } else {
            "session"
        }
        .to_owned(),
    })
}

/// `GET /api/v1/changes`: server-sent events, one `change` (`{"revision", "rulesetRevision"}`)
/// whenever anything stored changes, on any replica (within the change feed's delay): the
/// UI redraws what it shows. The first event is the current revision; the stream ends when
/// the caller's token is revoked, or — opened by a sign-in session — within
/// 2 s (`SESSION_RECHECK`) of the session ending (signed out on any replica, or expired).
pub async fn changes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
) -> Response {
    let mut published = state.control.subscribe();
    let token = caller.id.clone();
    let cookie = presented(&headers)
        .is_none()
        .then(|| session_cookie(&headers).map(str::to_owned))
        .flatten();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let mut last = None;
        let mut recheck = crate::ticker(SESSION_RECHECK);
        loop {
            let (revision, ruleset, active) = {
                let snap = published.borrow_and_update();
                let active = snap.token_cache().get(&token).is_some();
                (snap.revision, snap.ruleset_revision, active)
            };
            // A revoked token's stream ends with the snapshot that revoked it.
            if !active {
                return;
            }
            if last != Some(revision) {
                last = Some(revision);
                let data = format!("{{\"revision\":{revision},\"rulesetRevision\":{ruleset}}}");
                // A full buffer: the page redraws from the latest one anyway.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                    sender.try_send(Event::default().event("change").data(data))
                {
                    return;
                }
            }
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = sender.closed() => return,
                _ = recheck.tick(), if cookie.is_some() => {
                    let cookie = cookie.as_deref().unwrap_or_default();
                    let open = state
                        .control
                        .session_is_open(cookie, state.settings.sessions, crate::now_millis())
                        .await;
                    // A store that cannot answer right now ends nothing; the next check will.
                    if matches!(open, Ok(false)) {
                        return;
                    }
                }
            }
        }
    });
    let stream = crate::stream::futures_stream(receiver, ());
    let mut response = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// How often a change stream opened by a sign-in session checks that the session is open.
const SESSION_RECHECK: Duration = Duration::from_secs(2);

/// Ends idle sessions every ten minutes (lookups end them too; this keeps the table small).
pub async fn sweep(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = crate::ticker(Duration::from_secs(600));
    while crate::tick_or_stop(&mut tick, &mut stop).await {
        if !crate::store_is_up(&state) {
            continue;
        }
        match state
            .control
            .purge_sessions(state.settings.sessions, crate::now_millis())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "idle ui sessions ended"),
            Err(err) => tracing::warn!(error = %err, "idle ui sessions not swept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ui_pages_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/ui/flags/x?env=prod")),
            "/ui/flags/x?env=prod"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/api/v1/tokens",
            "/ui\\..",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn forms_from_other_sites_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let c = session_cookie_header("abc", 60, true);
        let c = c.to_str().unwrap();
        for part in [
            "sy_session=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
            "Secure",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!session_cookie_header("abc", 60, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
