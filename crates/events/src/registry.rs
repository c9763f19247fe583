//! A small client for the Confluent Schema Registry REST API: the calls the
//! codec and `orderctl` need, with errors that say whether to retry.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::error::RegistryError;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Subject naming: `TopicRecordNameStrategy`, i.e.
/// `<topic>-<fully qualified record name>`, because each topic carries
/// several event types and each type evolves on its own.
pub fn subject_name(topic: &str, full_record_name: &str) -> String {
    format!("{topic}-{full_record_name}")
}

/// Client for one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
}

/// A registered schema version.
#[derive(Debug, Clone, Deserialize)]
pub struct SubjectVersion {
    /// Subject.
    pub subject: String,
    /// Global schema id.
    pub id: u32,
    /// Version within the subject.
    pub version: i32,
    /// Schema text.
    pub schema: String,
}

/// Result of a compatibility check.
#[derive(Debug, Clone, Deserialize)]
pub struct Compatibility {
    /// Whether the schema is compatible.
    pub is_compatible: bool,
    /// Why not (when the registry says).
    #[serde(default)]
    pub messages: Vec<String>,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

impl RegistryClient {
    /// A client for the registry at `base_url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| RegistryError::Unavailable {
                url: base_url.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether the registry answers: `GET /`, which Confluent's registry and
    /// the workspace's own both answer with `{}`.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let url = format!("{}/", self.base);
        self.get::<serde_json::Value>(&url).await.map(|_| ())
    }

    /// Registers `schema` under `subject` (idempotent) and returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base, encode(subject));
        let r: IdResponse = self.post(&url, &json!({ "schema": schema })).await?;
        Ok(r.id)
    }

    /// Looks `schema` up under `subject`; `None` when it is not registered.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Option<SubjectVersion>, RegistryError> {
        let url = format!("{}/subjects/{}", self.base, encode(subject));
        match self.post(&url, &json!({ "schema": schema })).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if matches!(e.error_code(), Some(40401 | 40403)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The schema text with global id `id`; `None` when unknown.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<String>, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        match self.get::<SchemaResponse>(&url).await {
            Ok(r) => Ok(Some(r.schema)),
            Err(e) if e.error_code() == Some(40403) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether `schema` is compatible with the latest version of `subject`
    /// under the subject's configured level. A subject that does not exist
    /// yet is compatible.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<Compatibility, RegistryError> {
        let url = format!(
            "{}/compatibility/subjects/{}/versions/latest?verbose=true",
            self.base,
            encode(subject)
        );
        match self.post(&url, &json!({ "schema": schema })).await {
            Ok(c) => Ok(c),
            Err(e) if matches!(e.error_code(), Some(40401 | 40402)) => Ok(Compatibility {
                is_compatible: true,
                messages: vec![],
            }),
            Err(e) => Err(e),
        }
    }

    /// Sets the compatibility level of `subject` (e.g. `BACKWARD`).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let url = format!("{}/config/{}", self.base, encode(subject));
        let resp = self
            .http
            .put(&url)
            .header("content-type", CONTENT_TYPE)
            .json(&json!({ "compatibility": level }))
            .send()
            .await;
        handle::<serde_json::Value>(&url, resp).await.map(|_| ())
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, RegistryError> {
        let resp = self
            .http
            .post(url)
            .header("content-type", CONTENT_TYPE)
            .json(body)
            .send()
            .await;
        handle(url, resp).await
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, RegistryError> {
        let resp = self.http.get(url).send().await;
        handle(url, resp).await
    }
}

async fn handle<T: for<'de> Deserialize<'de>>(
    url: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<T, RegistryError> {
    let unavailable = |message: String| RegistryError::Unavailable {
        url: url.to_owned(),
        message,
    };
    let resp = resp.map_err(|e| unavailable(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| unavailable(format!("unexpected response body: {e}")));
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(unavailable(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let (error_code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error_code, b.message),
        Err(_) => (
            i64::from(status.as_u16()),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
    };
    Err(RegistryError::Rejected {
        url: url.to_owned(),
        status: status.as_u16(),
        error_code,
        message,
    })
}

/// Percent-encodes a subject for a URL path segment.
fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_topic_record_name_strategy() {
        assert_eq!(
            subject_name("order-events", "com.orderflow.events.OrderCreated"),
            "order-events-com.orderflow.events.OrderCreated"
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
