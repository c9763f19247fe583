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
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    /// HTTP Basic credentials (Confluent's `basic.auth.user.info`).
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
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
    /// Credentials in the URL (`http://user:password@host:8081`, Confluent's
    /// `basic.auth.credentials.source=URL`) are sent as HTTP Basic
    /// authentication and kept out of [`base_url`](Self::base_url) and of
    /// every error message.
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        let invalid = |message: String| RegistryError::Unavailable {
            url: redact(base_url),
            message,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let mut url =
            reqwest::Url::parse(base_url.trim()).map_err(|e| invalid(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        let auth = if url.username().is_empty() {
            None
        } else {
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| invalid("credentials are not UTF-8".to_owned()))
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or_default())?;
            // Both setters only fail for URLs that cannot have credentials,
            // which http(s) URLs can.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some((user, password))
        };
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            http,
            auth,
        })
    }

    /// Sends `user_info` (`user:password`, Confluent's
    /// `basic.auth.user.info`) as HTTP Basic authentication, instead of
    /// credentials given in the URL; `None` changes nothing.
    pub fn with_user_info(mut self, user_info: Option<&str>) -> Result<Self, RegistryError> {
        let Some(user_info) = user_info else {
            return Ok(self);
        };
        let (user, password) =
            user_info
                .split_once(':')
                .ok_or_else(|| RegistryError::Unavailable {
                    url: self.base.clone(),
                    message: "registry credentials must be user:password".to_owned(),
                })?;
        self.auth = Some((user.to_owned(), password.to_owned()));
        Ok(self)
    }

    /// The user this client authenticates as, if any.
    pub fn user(&self) -> Option<&str> {
        self.auth.as_ref().map(|(u, _)| u.as_str())
    }

    /// The user and password this client authenticates with, if any.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
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
            .authed(self.http.put(&url))
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
            .authed(self.http.post(url))
            .header("content-type", CONTENT_TYPE)
            .json(body)
            .send()
            .await;
        handle(url, resp).await
    }

    async fn get<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<T, RegistryError> {
        let resp = self.authed(self.http.get(url)).send().await;
        handle(url, resp).await
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(password)),
            None => req,
        }
    }
}

/// `url` without the password of its credentials, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// Decodes `%XX` escapes (as in URL credentials); `None` when the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
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
    let (error_code, mut message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error_code, b.message),
        Err(_) => (
            i64::from(status.as_u16()),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
    };
    if status.as_u16() == 401 {
        message.push_str(
            " (the registry wants a user: SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=user:password, \
             or http://user:password@host:port as its URL)",
        );
    }
    Err(RegistryError::Rejected {
        url: url.to_owned(),
        status: status.as_u16(),
        error_code,
        message,
    })
}

/// Everything but RFC 3986's unreserved characters is escaped in a
/// subject's path segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a subject for a URL path segment.
fn encode(subject: &str) -> String {
    percent_encoding::utf8_percent_encode(subject, SEGMENT).to_string()
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

    #[test]
    fn credentials_in_the_url_are_taken_out_of_it() {
        let c = RegistryClient::new("http://svc:p%40ss%3Aw@127.0.0.1:8081/").expect("valid");
        assert_eq!(c.base_url(), "http://127.0.0.1:8081");
        assert_eq!(c.user(), Some("svc"));
        assert_eq!(c.auth.as_ref().map(|(_, p)| p.as_str()), Some("p@ss:w"));
        assert!(!format!("{c:?}").contains("p@ss"));
        let plain = RegistryClient::new("http://127.0.0.1:8081").expect("valid");
        assert_eq!(plain.user(), None);
        let c = plain.with_user_info(Some("ci:a:b")).expect("user:password");
        assert_eq!(c.auth, Some(("ci".into(), "a:b".into())));
        assert!(RegistryClient::new("http://127.0.0.1:8081")
            .expect("valid")
            .with_user_info(Some("no-colon"))
            .is_err());
        let e = RegistryClient::new("ftp://u:secret@host/").expect_err("scheme");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(RegistryClient::new("not a url").is_err());
    }
}
