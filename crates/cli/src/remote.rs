//! Talking to a running server: the `--server`, `--token` and `--json` options shared by every
//! admin command, a small blocking client for the admin API, and how its failures reach the
//! user (the server's message, one line per validation problem, a hint, an exit code).
//!
//! Exit codes: a request the server answered with 4xx/5xx exits 1; no answer at all
//! (connection refused, bad URL, timeout) or an answer that is not the admin API's exits 2,
//! like usage errors.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use switchyard_api_types::requests::PendingChange;
use switchyard_api_types::{ErrorBody, FieldProblem};

/// Where the server is and who is asking; `global`, so they go before or after the subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Remote options")]
pub struct RemoteArgs {
    /// Base URL of the Switchyard server.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SERVER",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub server: String,
    /// API token (viewer to read, editor to change flags, admin for tokens).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print the server's JSON response instead of tables and summaries (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A blocking client for the admin API of one server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// An HTTP method of the admin API.
#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// A request body.
enum Payload {
    Json(Value),
    Text {
        content_type: &'static str,
        text: String,
    },
}

/// One request being built; [`Call::send`] sends it.
pub struct Call<'c> {
    client: &'c Client,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    if_match: Option<i64>,
    payload: Option<Payload>,
}

/// A successful (2xx) response.
#[derive(Debug)]
pub struct Reply {
    server: String,
    status: u16,
    text: String,
}

/// Why a request to the server failed.
#[derive(Debug)]
pub enum RemoteError {
    /// No HTTP response: connection refused, unknown host, timeout, bad URL.
    Unreachable {
        /// Base URL.
        server: String,
        /// Cause.
        source: Box<ureq::Error>,
    },
    /// The server answered 4xx or 5xx.
    Refused(Box<ApiFailure>),
    /// The change was accepted as a change request waiting for someone's approval (202).
    Pending {
        /// What the server said.
        message: String,
        /// The request's id.
        id: String,
    },
    /// A 2xx answer that is not what the admin API sends.
    Unexpected {
        /// Base URL.
        server: String,
        /// What was wrong with it.
        what: String,
    },
}

/// A 4xx/5xx answer, with the admin API's error body when there was one.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The admin API's error code (`not_found`, `validation_failed`, …); `None` when the body
    /// was not an admin API error (a proxy, or not a Switchyard server).
    pub code: Option<String>,
    /// The server's message.
    pub message: String,
    /// The body's `details`.
    pub details: Value,
    /// Validation problems (`details.problems`).
    pub problems: Vec<FieldProblem>,
    /// The file the problems' line numbers refer to.
    pub file: Option<String>,
    /// Whether a token was sent (for the 401 hint).
    token_sent: bool,
    /// Base URL (for the hint when this is not a Switchyard server).
    server: String,
}

impl RemoteArgs {
    /// A client for `--server` with `--token`.
    pub fn client(&self) -> Result<Client> {
        let base = self.server.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--server `{}` is not a URL: write it as http://HOST:PORT (or set SWITCHYARD_SERVER)",
                self.server
            );
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let token = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Client { agent, base, token })
    }
}

impl Client {
    fn call(&self, method: Method, path: String) -> Call<'_> {
        Call {
            client: self,
            method,
            path,
            query: Vec::new(),
            if_match: None,
            payload: None,
        }
    }

    /// `GET path` (`path` starts with `/`; build it with [`segment`] for user input).
    pub fn get(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::Get, path.into())
    }

    /// `POST path`.
    pub fn post(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::Post, path.into())
    }

    /// `PUT path`.
    pub fn put(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::Put, path.into())
    }

    /// `DELETE path`.
    pub fn delete(&self, path: impl Into<String>) -> Call<'_> {
        self.call(Method::Delete, path.into())
    }
}

impl Call<'_> {
    /// Adds `name=value` to the query string when `value` is present.
    pub fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    /// Sends `If-Match: "N"` when `version` is present.
    pub fn if_match(mut self, version: Option<i64>) -> Self {
        self.if_match = version;
        self
    }

    /// A JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        let value = serde_json::to_value(body).unwrap_or(Value::Null);
        self.payload = Some(Payload::Json(value));
        self
    }

    /// A text body.
    pub fn text(mut self, content_type: &'static str, text: String) -> Self {
        self.payload = Some(Payload::Text { content_type, text });
        self
    }

    /// Sends the request; a 2xx answer is a [`Reply`], anything else a [`RemoteError`].
    pub fn send(self) -> Result<Reply, RemoteError> {
        let client = self.client;
        let url = format!("{}{}", client.base, self.path);
        let unreachable = |source: ureq::Error| RemoteError::Unreachable {
            server: client.base.clone(),
            source: Box::new(source),
        };
        let response = match self.method {
            Method::Get => self.decorate(client.agent.get(&url)).call(),
            Method::Delete if self.payload.is_none() => {
                self.decorate(client.agent.delete(&url)).call()
            }
            Method::Delete => {
                let builder = self.decorate(client.agent.delete(&url).force_send_body());
                send_payload(builder, self.payload)
            }
            Method::Post => send_payload(self.decorate(client.agent.post(&url)), self.payload),
            Method::Put => send_payload(self.decorate(client.agent.put(&url)), self.payload),
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(Reply {
                server: client.base.clone(),
                status,
                text,
            });
        }
        Err(RemoteError::Refused(Box::new(ApiFailure::from_body(
            status,
            &text,
            client.token.is_some(),
            &client.base,
        ))))
    }

    fn decorate<B>(&self, mut builder: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        for (name, value) in &self.query {
            builder = builder.query(name, value);
        }
        if let Some(token) = &self.client.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(version) = self.if_match {
            builder = builder.header("If-Match", format!("\"{version}\""));
        }
        builder.header("Accept", "application/json")
    }
}

fn send_payload(
    builder: ureq::RequestBuilder<ureq::typestate::WithBody>,
    payload: Option<Payload>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    match payload {
        None => builder.send_json(serde_json::json!({})),
        Some(Payload::Json(value)) => builder.send_json(value),
        Some(Payload::Text { content_type, text }) => {
            builder.header("Content-Type", content_type).send(text)
        }
    }
}

impl Reply {
    /// The body, parsed.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, RemoteError> {
        if self.status == 202 {
            if let Ok(p) = serde_json::from_str::<PendingChange>(&self.text) {
                return Err(RemoteError::Pending {
                    message: p.message,
                    id: p.request.id,
                });
            }
        }
        serde_json::from_str(&self.text).map_err(|err| RemoteError::Unexpected {
            server: self.server.clone(),
            what: format!("its answer is not the expected JSON ({err})"),
        })
    }

    /// The body as the server sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Prints the body as the server sent it (for `--json`).
    pub fn print(&self) {
        print_text(&self.text);
    }
}

/// Prints `text` to stdout, ending it with a newline if it has none.
pub fn print_text(text: &str) {
    if text.ends_with('\n') {
        out!("{text}");
    } else {
        outln!("{text}");
    }
}

impl ApiFailure {
    fn from_body(status: u16, text: &str, token_sent: bool, server: &str) -> Self {
        let mut failure = ApiFailure {
            status,
            code: None,
            message: String::new(),
            details: Value::Null,
            problems: Vec::new(),
            file: None,
            token_sent,
            server: server.to_owned(),
        };
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(ErrorBody { error }) => {
                failure.problems = error
                    .details
                    .get("problems")
                    .cloned()
                    .and_then(|p| serde_json::from_value(p).ok())
                    .unwrap_or_default();
                failure.code = Some(error.code);
                // A one-field mistake names its field, as a validation problem names its path.
                failure.message = match error.details.get("field").and_then(Value::as_str) {
                    Some(field)
                        if failure.problems.is_empty() && !error.message.contains(field) =>
                    {
                        format!("{field}: {}", error.message)
                    }
                    _ => error.message,
                };
                failure.details = error.details;
            }
            Err(_) => {
                let snippet: String = text.trim().chars().take(200).collect();
                failure.message = match snippet.is_empty() {
                    true => format!("HTTP {status} from {server}"),
                    false => format!("HTTP {status} from {server}: {snippet}"),
                };
            }
        }
        failure
    }

    fn hint(&self) -> Option<String> {
        match (self.status, self.code.as_deref()) {
            (401, _) if self.token_sent => Some(
                "the token from --token or SWITCHYARD_TOKEN was refused (wrong or revoked); \
                 pass a valid one"
                    .to_owned(),
            ),
            (401, _) => Some(
                "pass an API token with --token TOKEN or set SWITCHYARD_TOKEN (the server \
                 prints the first admin token when it starts for the first time)"
                    .to_owned(),
            ),
            (403, _) => Some(
                "use a token with a larger role (--token or SWITCHYARD_TOKEN); \
                 `switchyard tokens create` makes one"
                    .to_owned(),
            ),
            (409, Some("read_only")) => Some(
                "this server serves flags read-only from a file; change the file instead"
                    .to_owned(),
            ),
            (409, Some("conflict")) => {
                // Only a stale --if-version has both; "already exists" has no expected version.
                let expected = self.details["expectedVersion"].as_i64();
                let current = self.details["currentVersion"].as_i64();
                expected.and(current).map(|v| {
                    format!(
                        "the flag is now at version {v}; look at it with `switchyard flags get` \
                         and retry (with --if-version {v})"
                    )
                })
            }
            (_, None) => Some(format!(
                "this does not look like a Switchyard server; check --server (or SWITCHYARD_SERVER), now {}",
                self.server
            )),
            _ => None,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Unreachable { server, source } => {
                write!(f, "cannot reach the server at {server}: {source}")
            }
            RemoteError::Refused(failure) => f.write_str(&failure.message),
            RemoteError::Pending { message, .. } => f.write_str(message),
            RemoteError::Unexpected { server, what } => {
                write!(f, "unexpected answer from {server}: {what}")
            }
        }
    }
}

impl std::error::Error for RemoteError {}

impl RemoteError {
    /// Attributes the validation problems' line numbers to `file`.
    pub fn in_file(mut self, file: &str) -> Self {
        if let RemoteError::Refused(failure) = &mut self {
            failure.file = Some(file.to_owned());
        }
        self
    }
}

/// Prints an error the way every command reports failures and picks the exit code: 1 when the
/// server refused, 2 otherwise.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let remote = err.chain().find_map(|e| e.downcast_ref::<RemoteError>());
    match remote {
        Some(unreachable @ RemoteError::Unreachable { .. }) => {
            eprintln!("error: {unreachable}");
            eprintln!(
                "hint: is the server running there? point the CLI at it with --server URL \
                 or the SWITCHYARD_SERVER environment variable"
            );
            ExitCode::from(2)
        }
        Some(RemoteError::Refused(failure)) => {
            let file = failure.file.as_deref();
            let headline = format!("{err:#}");
            match failure.problems.as_slice() {
                [] => eprintln!("error: {headline}"),
                // The message is the one problem: say it once.
                [only] if headline.ends_with(&problem_text(only)) => {
                    eprintln!("error: {headline}{}", problem_place(only, file));
                }
                many => {
                    let headline = headline.strip_suffix("; see details").unwrap_or(&headline);
                    eprintln!("error: {headline}:");
                    for problem in many {
                        eprintln!(
                            "  {}{}",
                            problem_text(problem),
                            problem_place(problem, file)
                        );
                    }
                }
            }
            if let Some(hint) = failure.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(1)
        }
        Some(RemoteError::Pending { message, id }) => {
            outln!("pending approval: {message}");
            outln!("see it with: switchyard requests get {id}");
            ExitCode::from(3)
        }
        Some(RemoteError::Unexpected { .. }) => {
            eprintln!("error: {}", chain_text(err));
            eprintln!(
                "hint: check that --server (or SWITCHYARD_SERVER) points at a Switchyard server"
            );
            ExitCode::from(2)
        }
        None => {
            eprintln!("error: {}", chain_text(err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined with `: `, each said once: a cause whose text the error
/// before it already includes (many errors print their source in their own message) is not
/// repeated.
pub fn chain_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for link in err.chain() {
        let link = link.to_string();
        if text.contains(&link) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&link);
    }
    text
}

/// `path: message`, or the message alone for a problem with the whole body.
fn problem_text(problem: &FieldProblem) -> String {
    match problem.path.as_str() {
        "" => problem.message.clone(),
        path => format!("{path}: {}", problem.message),
    }
}

/// ` (file:line)` when the line is known.
fn problem_place(problem: &FieldProblem, file: Option<&str>) -> String {
    match (file, problem.line) {
        (Some(file), Some(line)) => format!(" ({file}:{line})"),
        (None, Some(line)) => format!(" (line {line})"),
        _ => String::new(),
    }
}

/// `text` percent-encoded as one URL path segment.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "config file x.toml: {}", self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let err = anyhow::Error::new(Outer(std::io::Error::other("line 1: bad")))
            .context("invalid configuration");
        assert_eq!(
            chain_text(&err),
            "invalid configuration: config file x.toml: line 1: bad"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&plain), "outer: inner");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("checkout-v2.beta_1"), "checkout-v2.beta_1");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
        assert_eq!(segment(".."), "..");
    }

    #[test]
    fn non_api_error_bodies_keep_the_status() {
        let f = ApiFailure::from_body(502, "<html>bad gateway</html>", true, "http://x");
        assert_eq!(f.code, None);
        assert_eq!(
            f.message,
            "HTTP 502 from http://x: <html>bad gateway</html>"
        );
        assert!(f.hint().unwrap().contains("--server"));
    }
}
