//! The SDK's error type.

/// Why the SDK could not do what was asked. Network failures are not among them: the SDK
/// keeps serving and retries by itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (a server URL that is not http(s)).
    #[error("invalid SDK configuration: {0}")]
    Config(String),
    /// The server answered, but not with something this SDK reads.
    #[error("the server's answer does not read: {0}")]
    Protocol(String),
    /// A request failed (the cause is kept).
    #[error("request to the Switchyard server failed")]
    Http(#[source] reqwest::Error),
    /// The server refused the SDK key.
    #[error("the server refused the SDK key ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What it said.
        message: String,
    },
}
