//! The one error type. Every failure says what kind of failure it is (whose fault, and whether
//! a retry can help) and carries a message for the caller; the HTTP layer maps the kind to a
//! status code and the spec's envelope `{"status":"error","message":…,"data":null}`
//! ([`crate::http::status_of`]).

/// What kind of failure, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed input: bad JSON, wrong types, bad query values (400).
    BadRequest,
    /// No API key, or one that is unknown or revoked; a bad webhook signature (401).
    Unauthorized,
    /// Refused whoever asks: the webhook's verify token does not match (403).
    Forbidden,
    /// Unknown id or route (404).
    NotFound,
    /// A known path with another method (405).
    MethodNotAllowed,
    /// The action is not allowed in the current status, or something changed meanwhile (409).
    Conflict,
    /// The input is larger than allowed (413).
    TooLarge,
    /// A content type the route does not read (415).
    UnsupportedMedia,
    /// Well-formed input that breaks a rule (422).
    Invalid,
    /// A dependency failed or is not configured; the caller may retry (503).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedMedia, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// A dependency (the store, a queue) failed: the details go to the log only, the caller
    /// reads `<context>; please retry`.
    pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(ErrorKind::Unavailable, format!("{context}; please retry"))
    }
}

/// A domain rule was broken: always [`ErrorKind::Invalid`], naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> Self {
        AppError::invalid(e.0)
    }
}

pub type AppResult<T> = Result<T, AppError>;
