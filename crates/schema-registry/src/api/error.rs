//! The one HTTP error type: Confluent's `{"error_code", "message"}` bodies
//! with Confluent's statuses and codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::SrJson;

/// Every error the API returns. Variants map one-to-one onto Confluent error
/// codes; store failures are logged and reported without internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 40401: the subject has no (live) versions.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402: the subject exists but not this version.
    #[error("Version {0} not found.")]
    VersionNotFound(i32),
    /// 40403: no schema with this id.
    #[error("Schema {0} not found")]
    SchemaIdNotFound(i32),
    /// 40403: the schema is not registered under the subject.
    #[error("Schema not found")]
    SchemaNotFound,
    /// 40404: soft-deleting a subject that is already soft-deleted.
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405: permanently deleting a subject that was not soft-deleted first.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406: soft-deleting a version that is already soft-deleted.
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i32),
    /// 40407: permanently deleting a version that was not soft-deleted first.
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i32),
    /// 40408: the subject has no subject-level compatibility level.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    /// 404: no route matches the path.
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    /// 405: the route exists but not for this method.
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    /// 409: the schema breaks the subject's compatibility level.
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
        .details.join(", ")
    )]
    Incompatible {
        /// The subject registered to.
        subject: String,
        /// One entry per failed check.
        details: Vec<String>,
    },
    /// 42201: the schema text, type or references are unusable.
    #[error("{0}")]
    InvalidSchema(String),
    /// 42202: the version is neither a positive integer nor `latest`.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// 42203: not one of the seven compatibility levels.
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel,
    /// 400: the body is not JSON or does not have the expected shape.
    #[error("{0}")]
    BadRequest(String),
    /// 413: the body exceeds the size limit.
    #[error("Request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 503: the database cannot be reached (readiness).
    #[error("Database is not reachable")]
    Unavailable,
    /// 50001: the database failed; the cause is logged, not returned.
    #[error("Error in the backend data store")]
    Store(#[from] sqlx::Error),
    /// 50001: stored data could not be used (e.g. an unparsable schema).
    #[error("Error in the backend data store")]
    Corrupt(String),
}

impl ApiError {
    /// The HTTP status and Confluent `error_code` of this error.
    pub fn codes(&self) -> (StatusCode, u32) {
        match self {
            Self::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            Self::VersionNotFound(_) => (StatusCode::NOT_FOUND, 40402),
            Self::SchemaIdNotFound(_) | Self::SchemaNotFound => (StatusCode::NOT_FOUND, 40403),
            Self::SubjectSoftDeleted(_) => (StatusCode::NOT_FOUND, 40404),
            Self::SubjectNotSoftDeleted(_) => (StatusCode::NOT_FOUND, 40405),
            Self::VersionSoftDeleted(..) => (StatusCode::NOT_FOUND, 40406),
            Self::VersionNotSoftDeleted(..) => (StatusCode::NOT_FOUND, 40407),
            Self::SubjectConfigNotFound(_) => (StatusCode::NOT_FOUND, 40408),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, 404),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
            Self::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            Self::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            Self::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            Self::InvalidCompatibilityLevel => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 413),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, 503),
            Self::Store(_) | Self::Corrupt(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

/// The wire shape of every error.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error_code: u32,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(cause) => tracing::error!(error = %cause, "database error"),
            Self::Corrupt(cause) => tracing::error!(error = %cause, "unusable stored data"),
            _ => {}
        }
        let (status, error_code) = self.codes();
        let body = ErrorBody {
            error_code,
            message: self.to_string(),
        };
        (status, SrJson(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_hide_their_cause() {
        let error = ApiError::Store(sqlx::Error::PoolTimedOut);
        assert_eq!(error.to_string(), "Error in the backend data store");
        assert_eq!(error.codes(), (StatusCode::INTERNAL_SERVER_ERROR, 50001));
    }

    #[test]
    fn incompatible_lists_details() {
        let error = ApiError::Incompatible {
            subject: "s".into(),
            details: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            error.to_string(),
            "Schema being registered is incompatible with an earlier schema for subject \"s\", details: [a, b]"
        );
    }
}
