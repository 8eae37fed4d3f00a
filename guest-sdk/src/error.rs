//! Why a handler did not accept an entry, and why a field could not be read.

use std::fmt;

use crate::bindings::streamhost::plugin::types::HandlerError as WitHandlerError;

/// A handler's refusal of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Transient failure: the host delivers the entry again after the plugin's backoff.
    Retry(String),
    /// Permanent failure: the host dead-letters the entry at once.
    Reject(String),
}

impl HandlerError {
    /// A transient failure; `reason` is logged and kept with the entry.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Self::Retry(reason.to_string())
    }

    /// A permanent failure; `reason` goes with the entry to the dead-letter stream.
    pub fn reject(reason: impl fmt::Display) -> Self {
        Self::Reject(reason.to_string())
    }

    /// The reason given.
    pub fn reason(&self) -> &str {
        match self {
            Self::Retry(reason) | Self::Reject(reason) => reason,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry(reason) => write!(f, "retry: {reason}"),
            Self::Reject(reason) => write!(f, "reject: {reason}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// A field that is missing or malformed cannot become valid by retrying.
impl From<FieldError> for HandlerError {
    fn from(err: FieldError) -> Self {
        Self::reject(err)
    }
}

impl From<HandlerError> for WitHandlerError {
    fn from(err: HandlerError) -> Self {
        match err {
            HandlerError::Retry(reason) => Self::Retry(reason),
            HandlerError::Reject(reason) => Self::Reject(reason),
        }
    }
}

/// A field of an entry could not be read as asked.
#[derive(Debug)]
pub enum FieldError {
    /// The entry has no field of that name.
    Missing { field: String },
    /// The value is not UTF-8 text.
    NotUtf8 { field: String },
    /// The value is not JSON of the expected shape.
    NotJson {
        field: String,
        source: serde_json::Error,
    },
    /// The value is not a number of the expected type.
    NotNumber { field: String, reason: String },
}

impl FieldError {
    /// The name of the field that could not be read.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing { field }
            | Self::NotUtf8 { field }
            | Self::NotJson { field, .. }
            | Self::NotNumber { field, .. } => field,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { field } => write!(f, "missing field `{field}`"),
            Self::NotUtf8 { field } => write!(f, "field `{field}` is not UTF-8"),
            Self::NotJson { field, source } => write!(f, "field `{field}` is not JSON: {source}"),
            Self::NotNumber { field, reason } => {
                write!(f, "field `{field}` is not a number: {reason}")
            }
        }
    }
}

impl std::error::Error for FieldError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotJson { source, .. } => Some(source),
            _ => None,
        }
    }
}
