//! The OpenAPI document of a service, generated from its code.
//!
//! Each handler carries `#[utoipa::path]` (method, path, parameters,
//! request body, every answer) and the types it reads and writes derive
//! `utoipa::ToSchema`, so the document says what the code does. A service
//! registers its routes only through [`ApiRouter::routes`], which takes
//! what `routes!` makes of annotated handlers: the route is added at the
//! documented path and method, so a route without a document cannot be
//! written, and a documented path that is not routed cannot either.
//! [`document`] adds the runtime's own routes (health, metrics, this
//! document), the `bearerAuth` scheme and the server.
//!
//! Each service commits the result as `openapi.json` beside its crate, for
//! readers without a running stack; a router test checks it is the
//! generated one (`ORDERFLOW_WRITE_OPENAPI=1` rewrites it).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::runtime::ServiceSpec;

/// The name of the bearer-token scheme in every document
/// (`security(("bearerAuth" = []))` on a protected operation).
pub const BEARER: &str = "bearerAuth";

/// The 401 every protected operation may answer.
pub const UNAUTHORIZED: &str = "`unauthorized`: no bearer token, or one that is invalid, expired or not of this issuer and audience (`WWW-Authenticate: Bearer ...`).";

/// The 403 of an operation that needs a role.
pub const FORBIDDEN: &str = "`forbidden`: the token lacks the role this needs (`details.roles`).";

/// The 503 of an operation that needs the database.
pub const DATABASE_UNAVAILABLE: &str =
    "`database_unavailable`: the database is unreachable; retry later.";

/// The 413 of an operation that takes a body.
pub const PAYLOAD_TOO_LARGE: &str = "`payload_too_large`: the body is over 64 KiB.";

/// The 415 of an operation that takes a JSON body.
pub const UNSUPPORTED_MEDIA_TYPE: &str =
    "`unsupported_media_type`: the body is not sent as `application/json`.";

/// The 500 any operation may answer.
pub const INTERNAL: &str = "`internal`: an unexpected error (logged).";

/// The `traceparent` header an operation that emits an event reads.
pub const TRACEPARENT: &str = "W3C trace context; the emitted event continues this trace (a new trace when absent or invalid).";

const BEARER_DESCRIPTION: &str = "An EdDSA (Ed25519) JWT of the configured issuer (`AUTH_PUBLIC_KEY`/`AUTH_PUBLIC_KEY_FILE`, `AUTH_ISSUER`, `AUTH_AUDIENCE`) with claims `sub` and `roles` (`customer`, `operator`, `service`). For local runs `orderctl token --sub NAME --role ROLE` signs one with the development key. The health endpoints, `/metrics` and `/openapi.json` need none.";

/// A service's routes with their document. It only takes documented
/// routes (see the module docs); `S` is the state its handlers share.
pub struct ApiRouter<S = ()>(OpenApiRouter<S>);

impl<S> ApiRouter<S>
where
    S: Send + Sync + Clone + 'static,
{
    /// No routes yet; `base` gives the document's `info` and `tags`
    /// (a `#[derive(utoipa::OpenApi)]` of the service).
    pub fn new(base: OpenApi) -> Self {
        Self(OpenApiRouter::with_openapi(base))
    }

    /// Adds the operations `routes!(handler, …)` made of annotated
    /// handlers (several methods of one path in one call).
    pub fn routes(self, routes: UtoipaMethodRouter<S>) -> Self {
        Self(self.0.routes(routes))
    }

    /// Gives the handlers their state.
    pub fn with_state<S2>(self, state: S) -> ApiRouter<S2> {
        ApiRouter(self.0.with_state(state))
    }

    /// The document of the routes so far.
    pub fn openapi(&self) -> &OpenApi {
        self.0.get_openapi()
    }
}

impl ApiRouter<()> {
    /// The axum router and the document.
    pub fn split(self) -> (Router, OpenApi) {
        self.0.split_for_parts()
    }
}

/// The whole document of the service `spec` whose own routes `api`
/// documents: its operations, then the runtime's (health, metrics, this
/// document), the `bearerAuth` scheme and the default local server.
pub fn document(spec: &ServiceSpec, api: OpenApi) -> OpenApi {
    let mut doc = api.merge_from(crate::health::api());
    doc.servers = Some(vec![Server::new(format!(
        "http://127.0.0.1:{}",
        spec.default_port
    ))]);
    let components = doc.components.get_or_insert_with(Default::default);
    let mut http = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .build();
    http.description = Some(BEARER_DESCRIPTION.to_owned());
    components
        .security_schemes
        .insert(BEARER.to_owned(), SecurityScheme::Http(http).into());
    doc
}

/// `doc` as the text served at `/openapi.json` and committed as
/// `openapi.json` (pretty, with a final newline).
pub fn to_text(doc: &OpenApi) -> String {
    let mut text = doc
        .to_pretty_json()
        .expect("an OpenAPI document serialises");
    text.push('\n');
    text
}
