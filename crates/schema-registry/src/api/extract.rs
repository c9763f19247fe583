//! Extractors and responders that keep every rejection a JSON [`ApiError`]
//! and every body in Confluent's media type.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::avro::{self, ParsedSchema, AVRO};

/// Confluent's response media type.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";
/// The request body size limit.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON response in Confluent's media type.
#[derive(Debug)]
pub struct SrJson<T>(pub T);

impl<T: Serialize> IntoResponse for SrJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => raw(body),
            Err(e) => {
                tracing::error!(error = %e, "serialising response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A body that is already JSON text (a stored schema), sent as is.
#[derive(Debug)]
pub struct RawJson(pub String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        raw(self.0.into_bytes())
    }
}

fn raw(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1));
    response
}

/// A JSON request body, read whatever the content type says: Confluent
/// clients send `application/vnd.schemaregistry.v1+json`, `application/json`,
/// `application/octet-stream` or nothing.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(BODY_LIMIT)
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))
    }
}

/// Path parameters whose rejection is a JSON error.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// The query flags the endpoints understand; unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Flags {
    /// Include soft-deleted subjects or versions.
    pub deleted: bool,
    /// Delete permanently (after a soft delete).
    pub permanent: bool,
    /// Add `messages` to compatibility answers.
    pub verbose: bool,
    /// `GET /config/{subject}`: fall back to the global level.
    pub default_to_global: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Flags {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Flags>::from_request_parts(parts, state)
            .await
            .map(|Query(flags)| flags)
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// A version path segment: a number or the latest live version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// `latest` or `-1`.
    Latest,
    /// A version number, at least 1.
    Number(i32),
}

impl VersionSpec {
    /// Parses `latest`, `-1` or a positive 32-bit integer; anything else is 42202.
    pub fn parse(segment: &str) -> Result<Self, ApiError> {
        if segment.eq_ignore_ascii_case("latest") {
            return Ok(Self::Latest);
        }
        match segment.parse::<i32>() {
            Ok(-1) => Ok(Self::Latest),
            Ok(n) if n > 0 => Ok(Self::Number(n)),
            _ => Err(ApiError::InvalidVersion(segment.to_owned())),
        }
    }
}

/// The body of register, lookup and compatibility requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    /// The schema text (a JSON document inside a JSON string).
    pub schema: Option<String>,
    /// `AVRO` when absent; nothing else is supported.
    pub schema_type: Option<String>,
    /// Schema references; must be empty here.
    #[serde(default)]
    pub references: Vec<serde_json::Value>,
}

impl SchemaRequest {
    /// Validates the request and parses its schema (errors are 42201).
    pub fn parse(self) -> Result<ParsedSchema, ApiError> {
        if let Some(kind) = self.schema_type.as_deref() {
            if !kind.eq_ignore_ascii_case(AVRO) {
                return Err(ApiError::InvalidSchema(format!(
                    "Invalid schema type {kind}: unsupported, this registry only supports AVRO"
                )));
            }
        }
        if !self.references.is_empty() {
            return Err(ApiError::InvalidSchema(
                "Invalid schema: schema references are unsupported by this registry".to_owned(),
            ));
        }
        let text = self
            .schema
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| ApiError::InvalidSchema("Empty schema".to_owned()))?;
        avro::parse(&text).map_err(|e| ApiError::InvalidSchema(format!("Invalid schema: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(VersionSpec::parse("latest").ok(), Some(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("-1").ok(), Some(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("3").ok(), Some(VersionSpec::Number(3)));
        for bad in ["0", "-2", "abc", "99999999999", ""] {
            assert!(matches!(
                VersionSpec::parse(bad),
                Err(ApiError::InvalidVersion(_))
            ));
        }
    }
}
