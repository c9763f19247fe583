//! Router-level tests of a service, with no stack: the service's `router()`
//! behind the same layers it is served with ([`crate::runtime::app`]),
//! called through `tower::ServiceExt::oneshot`, with tokens signed by the
//! development key (`deploy/dev-keys/`).
//!
//! The database pool is [`unreachable_pool`]: these tests cover what a
//! service refuses before it needs its database (authentication, roles,
//! paths, bodies, headers). A request that reaches the database gets an
//! error instead of a 4xx, so a check that moved behind a query fails the
//! test.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tower::ServiceExt as _;
use utoipa::openapi::OpenApi;

use crate::auth::{claims, mint, Role, Verifier};

const DEV_PRIVATE: &[u8] = include_bytes!("../../../deploy/dev-keys/jwt-dev.key.pem");
const DEV_PUBLIC: &[u8] = include_bytes!("../../../deploy/dev-keys/jwt-dev.pub.pem");
/// Issuer and audience the development tokens carry (the defaults of
/// `JWT_ISSUER` and `JWT_AUDIENCE`).
const ISSUER: &str = "orderflow";
const AUDIENCE: &str = "orderflow";

/// A token for `sub` with `roles`, valid for an hour.
pub fn token(sub: &str, roles: &[Role]) -> String {
    mint(&claims(sub, roles, ISSUER, AUDIENCE, 3600), DEV_PRIVATE).expect("the dev key signs")
}

/// A pool that never connects (port 1, half a second to give up).
pub fn unreachable_pool() -> PgPool {
    PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://nobody@127.0.0.1:1/unreachable")
        .expect("a lazy pool")
}

/// A service's router as it is served.
#[derive(Clone)]
pub struct TestApp {
    app: Router,
    /// The document of the service's own routes.
    doc: OpenApi,
}

/// One request to send.
pub struct Call {
    request: axum::http::request::Builder,
    body: Body,
}

/// What came back: status, headers and the body as JSON (`Null` when it
/// is empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON.
    pub json: serde_json::Value,
}

impl Reply {
    /// The `code` of a JSON error.
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or_default()
    }

    /// The fields named by a validation error's `details`.
    pub fn fields(&self) -> Vec<String> {
        self.json["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["field"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Call {
    /// A request with `method` to `uri`.
    pub fn new(method: Method, uri: &str) -> Self {
        Self {
            request: Request::builder().method(method).uri(uri),
            body: Body::empty(),
        }
    }

    /// `GET uri`.
    pub fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri)
    }

    /// `POST uri`.
    pub fn post(uri: &str) -> Self {
        Self::new(Method::POST, uri)
    }

    /// `PUT uri`.
    pub fn put(uri: &str) -> Self {
        Self::new(Method::PUT, uri)
    }

    /// With `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header(header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// As `sub` with `roles` (a development token).
    pub fn as_(self, sub: &str, roles: &[Role]) -> Self {
        self.bearer(&token(sub, roles))
    }

    /// As an operator.
    pub fn as_operator(self) -> Self {
        self.as_("op-1", &[Role::Operator])
    }

    /// As the customer `sub`.
    pub fn as_customer(self, sub: &str) -> Self {
        self.as_(sub, &[Role::Customer])
    }

    /// With a header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        self.request = self
            .request
            .header(name, HeaderValue::from_str(value).expect("a header value"));
        self
    }

    /// With a JSON body.
    pub fn json(self, body: serde_json::Value) -> Self {
        self.raw("application/json", body.to_string())
    }

    /// With a body of `content_type`, sent as is.
    pub fn raw(mut self, content_type: &str, body: impl Into<String>) -> Self {
        self.request = self.request.header(header::CONTENT_TYPE, content_type);
        self.body = Body::from(body.into());
        self
    }
}

impl TestApp {
    /// `api` (a service's `router()`) behind the runtime's layers,
    /// verifying development tokens.
    pub fn new(api: crate::ApiRouter) -> Self {
        let verifier = Verifier::new(DEV_PUBLIC, ISSUER, AUDIENCE).expect("the dev public key");
        let (router, doc) = api.split();
        Self {
            app: crate::runtime::app(router, Arc::new(verifier)),
            doc,
        }
    }

    /// The document of the service's own routes (without the runtime's).
    pub fn document(&self) -> &OpenApi {
        &self.doc
    }

    /// Sends `call` and reads the whole answer.
    pub async fn send(&self, call: Call) -> Reply {
        let request = call.request.body(call.body).expect("a request");
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            json,
        }
    }

    /// Checks the guard of `method uri`: 401 with a challenge without a
    /// token, with a malformed `Authorization` and with a token that is not
    /// one; 403 `forbidden` for a token with only one of `refused`.
    pub async fn assert_guarded(&self, method: Method, uri: &str, refused: &[Role]) {
        self.assert_guarded_with(method, uri, None, refused).await;
    }

    /// [`Self::assert_guarded`] for a route that takes a JSON body: each
    /// request carries `body` (a valid one), so that the answer is about
    /// the caller, not the body.
    pub async fn assert_guarded_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<&serde_json::Value>,
        refused: &[Role],
    ) {
        let call = |auth: Option<&str>| {
            let mut c = Call::new(method.clone(), uri);
            if let Some(a) = auth {
                c = c.header(header::AUTHORIZATION, a);
            }
            match body {
                Some(b) => c.json(b.clone()),
                None => c,
            }
        };
        self.assert_needs_token(call(None)).await;
        self.assert_needs_token(call(Some("Basic b3A6b3A="))).await;
        self.assert_needs_token(call(Some("Bearer not.a.token")))
            .await;
        for role in refused {
            let auth = format!("Bearer {}", token("someone", &[*role]));
            self.assert_forbidden(call(Some(&auth))).await;
        }
    }

    /// Checks that the routes are the document's, as far as requests can
    /// tell: every documented operation is routed (not answered by the
    /// fallback for unknown routes or methods), and every other method on
    /// a documented path is 405. Path parameters get a UUID when named like
    /// an id, else `x1`; a route that refuses the value (400) is still
    /// routed. (A route on a path the document lacks cannot be added:
    /// [`crate::ApiRouter`] takes documented handlers only.)
    pub async fn assert_routes_match_document(&self) {
        const METHODS: [Method; 5] = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ];
        let doc = serde_json::to_value(&self.doc).expect("the document as JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let mut checked = 0;
        for (path, item) in paths {
            let concrete: String = path
                .split('/')
                .map(
                    |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        // A value the route refuses (400) still shows it is routed.
                        Some(name) if name.to_ascii_lowercase().ends_with("id") => {
                            "0190f3b2-1c4d-7a8e-9f00-0123456789ab".to_owned()
                        }
                        Some(_) => "x1".to_owned(),
                        None => seg.to_owned(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            let item = item.as_object().expect("a path item");
            for m in METHODS {
                let documented = item.contains_key(&m.as_str().to_ascii_lowercase());
                let r = self
                    .send(
                        Call::new(m.clone(), &concrete)
                            .as_("probe", &[Role::Operator, Role::Service])
                            .json(serde_json::json!({})),
                    )
                    .await;
                let not_allowed = r.code() == "method_not_allowed";
                let unknown = r.code() == "not_found"
                    && r.json["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no route for"));
                if documented {
                    assert!(
                        !not_allowed && !unknown,
                        "{m} {path} is documented but not routed: {} {}",
                        r.status,
                        r.json
                    );
                    checked += 1;
                } else {
                    assert!(
                        not_allowed && r.status == StatusCode::METHOD_NOT_ALLOWED,
                        "{m} {path} is not documented but answered {} {}",
                        r.status,
                        r.json
                    );
                }
            }
        }
        assert!(
            checked > 0,
            "the document lists no operation of the service"
        );
    }

    /// Checks that `committed` (the text of the service's committed
    /// `openapi.json`, at `path`) is the document generated from the code
    /// for `spec`; with `ORDERFLOW_WRITE_OPENAPI=1` it writes the file
    /// instead.
    pub fn assert_committed_document(
        &self,
        spec: &crate::ServiceSpec,
        committed: &str,
        path: &str,
    ) {
        let doc = crate::openapi::document(spec, self.doc.clone());
        let json = serde_json::to_value(&doc).expect("the document as JSON");
        let mut refs = Vec::new();
        collect_refs(&json, &mut refs);
        for r in refs {
            let target = r
                .strip_prefix('#')
                .and_then(|pointer| json.pointer(pointer));
            assert!(target.is_some(), "{r} names nothing in the document");
        }
        let text = crate::openapi::to_text(&doc);
        if std::env::var_os("ORDERFLOW_WRITE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(path, &text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
            return;
        }
        if committed != text {
            let line = committed
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(committed.lines().count().min(text.lines().count()));
            panic!(
                "{path} is not the document the code generates (first difference at line {}); \
                 rewrite it with ORDERFLOW_WRITE_OPENAPI=1 cargo nextest run -E 'test(committed_openapi)'",
                line + 1
            );
        }
    }

    /// Checks the JSON answers of the runtime's fallbacks, as an operator:
    /// 404 `not_found` for `unknown` (a path no route has) and 405
    /// `method_not_allowed` for each of `wrong_methods`.
    pub async fn assert_fallbacks(&self, unknown: &str, wrong_methods: Vec<Call>) {
        let r = self.send(Call::get(unknown).as_operator()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{unknown}"
        );
        for call in wrong_methods {
            let r = self.send(call.as_operator()).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
                "{:?}",
                r.json
            );
        }
    }

    /// Sends `call` without a token and checks the 401 with its challenge.
    pub async fn assert_needs_token(&self, call: Call) {
        let r = self.send(call).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
        assert!(
            r.headers.contains_key(header::WWW_AUTHENTICATE),
            "401 without WWW-Authenticate"
        );
    }

    /// Sends `call` and checks the 403 for a missing role.
    pub async fn assert_forbidden(&self, call: Call) {
        let r = self.send(call).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json);
        assert_eq!(r.code(), "forbidden");
    }
}

/// Every `$ref` in `v`.
fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
