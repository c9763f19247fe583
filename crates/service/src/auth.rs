//! Who is calling: bearer JWTs signed with Ed25519 (`EdDSA`), verified
//! with the issuer's public key (signature, `exp`, `nbf`, `iss`, `aud`).
//!
//! A token names its subject (`sub`: the customer id for customers) and its
//! roles (`roles`: `customer`, `operator`, `service`). Handlers take a
//! [`Principal`] and ask it what they need ([`Principal::require`],
//! [`Principal::may_act_for`]). A missing or bad token answers 401 with
//! `WWW-Authenticate: Bearer …`; a valid token without the role 403. Health,
//! metrics and the OpenAPI document take no [`Principal`], so they stay
//! open.
//!
//! [`mint`] signs tokens with the private key: `orderctl token` uses it
//! with the development key in `deploy/dev-keys/`, which must never sign
//! anything outside a development machine.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places orders for themself, reads and cancels only their own.
    Customer,
    /// Runs the shop: stock, dispatch and delivery, every order and e-mail.
    Operator,
    /// Automation (load generators, integrations): places and reads orders
    /// on behalf of any customer.
    Service,
}

impl Role {
    /// The claim value (`customer`, `operator`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Operator => "operator",
            Role::Service => "service",
        }
    }

    /// Parses a claim value.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Customer, Role::Operator, Role::Service]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the customer id, or the operator's or service's name.
    pub sub: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
}

/// Verifies tokens: the issuer's public key and what the claims must say.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for tokens signed by the Ed25519 key whose public half is
    /// `public_pem` (PEM, or only its base64 line, which fits an env file),
    /// issued by `issuer` for `audience`.
    pub fn new(public_pem: &[u8], issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let text = String::from_utf8_lossy(public_pem);
        let pem = if text.contains("-----BEGIN") {
            text.into_owned()
        } else {
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                text.trim()
            )
        };
        let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| {
            anyhow::anyhow!("the token public key is not an Ed25519 public key in PEM: {e}")
        })?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self { key, validation })
    }

    /// The claims of `token`, if it is valid.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }
}

/// Signs `claims` with the Ed25519 private key `private_pem`.
pub fn mint(claims: &Claims, private_pem: &[u8]) -> anyhow::Result<String> {
    let key = EncodingKey::from_ed_pem(private_pem).map_err(|e| {
        anyhow::anyhow!("the signing key is not an Ed25519 private key in PEM: {e}")
    })?;
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key)
        .map_err(|e| anyhow::anyhow!("signing the token: {e}"))
}

/// Claims for `sub` with `roles`, valid from now for `ttl_secs`.
pub fn claims(sub: &str, roles: &[Role], issuer: &str, audience: &str, ttl_secs: u64) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Claims {
        sub: sub.to_owned(),
        roles: roles.to_vec(),
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        exp: now + ttl_secs,
        iat: now,
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Subject (`sub`).
    pub sub: String,
    /// Roles.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the caller has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.has(*r)) {
            Ok(())
        } else {
            Err(forbidden(roles))
        }
    }

    /// Whether the caller may see or act on what belongs to `customer_id`:
    /// operators and services on anyone's, a customer on their own.
    pub fn may_act_for(&self, customer_id: &str) -> bool {
        self.has(Role::Operator)
            || self.has(Role::Service)
            || (self.has(Role::Customer) && self.sub == customer_id)
    }
}

impl Principal {
    /// The customer a request acts for, given the `customerId` its body
    /// names: a customer acts for themself (the body may repeat their id;
    /// naming another is 403), a service for the customer the body names
    /// (`None` when it names none). Other callers: 403.
    pub fn customer_named(&self, body: Option<String>) -> Result<Option<String>, ApiError> {
        self.require(&[Role::Customer, Role::Service])?;
        if self.has(Role::Service) {
            return Ok(body);
        }
        match body {
            Some(c) if c != self.sub => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "customerId must be the token's subject: a customer acts for themself",
            )
            .with_details(serde_json::json!({ "customerId": c }))),
            _ => Ok(Some(self.sub.clone())),
        }
    }
}

fn forbidden(roles: &[Role]) -> ApiError {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this needs the role {}", names.join(" or ")),
    )
    .with_details(serde_json::json!({ "roles": names }))
}

/// A missing or invalid token: 401 with `WWW-Authenticate`.
#[derive(Debug)]
pub struct Unauthorized {
    error: ApiError,
    challenge: String,
}

impl Unauthorized {
    fn new(message: String, invalid: bool) -> Self {
        let challenge = if invalid {
            format!(
                "Bearer realm=\"orderflow\", error=\"invalid_token\", error_description=\"{}\"",
                message.replace(['"', '\\'], "'")
            )
        } else {
            "Bearer realm=\"orderflow\"".to_owned()
        };
        Self {
            error: ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
            challenge,
        }
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut r = self.error.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(verifier) = parts.extensions.get::<Arc<Verifier>>().cloned() else {
            return Err(ApiError::internal("no token verifier configured").into_response());
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(Unauthorized::new(
                "a bearer token is required (Authorization: Bearer <token>)".into(),
                false,
            )
            .into_response());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(Unauthorized::new(
                "the Authorization header must be `Bearer <token>`".into(),
                true,
            )
            .into_response());
        };
        match verifier.verify(token) {
            Ok(c) if c.sub.trim().is_empty() => Err(Unauthorized::new(
                "the token has an empty subject".into(),
                true,
            )
            .into_response()),
            Ok(c) => Ok(Principal {
                sub: c.sub,
                roles: c.roles,
            }),
            Err(e) => Err(Unauthorized::new(format!("invalid token: {e}"), true).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: &[u8] = include_bytes!("../../../deploy/dev-keys/jwt-dev.key.pem");
    const PUBLIC: &[u8] = include_bytes!("../../../deploy/dev-keys/jwt-dev.pub.pem");
    /// Another key pair: a token it signs must be refused.
    const OTHER_PRIVATE: &[u8] = b"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKF0aRCOCtNeMnnXpZ2pyWBVPuJxKl4345DnUCpnW0zp
-----END PRIVATE KEY-----
";

    fn verifier() -> Verifier {
        Verifier::new(PUBLIC, "orderflow", "orderflow").expect("verifier")
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let c = claims("c-1", &[Role::Customer], "orderflow", "orderflow", 60);
        let token = mint(&c, PRIVATE).expect("mint");
        assert_eq!(verifier().verify(&token), Ok(c));
    }

    #[test]
    fn wrong_key_issuer_audience_or_expiry_is_refused() {
        let v = verifier();
        let ok = claims("c-1", &[Role::Customer], "orderflow", "orderflow", 60);
        let other_key = mint(&ok, OTHER_PRIVATE).expect("mint");
        assert!(v.verify(&other_key).is_err());
        let other_iss = claims("c-1", &[Role::Customer], "elsewhere", "orderflow", 60);
        assert!(v.verify(&mint(&other_iss, PRIVATE).expect("mint")).is_err());
        let other_aud = claims("c-1", &[Role::Customer], "orderflow", "other", 60);
        assert!(v.verify(&mint(&other_aud, PRIVATE).expect("mint")).is_err());
        let mut expired = ok.clone();
        expired.exp = expired.iat - 120;
        assert!(v.verify(&mint(&expired, PRIVATE).expect("mint")).is_err());
        assert!(v.verify("not.a.token").is_err());
        // Signed with no algorithm at all.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjLTEifQ.";
        assert!(v.verify(none).is_err());
    }

    #[test]
    fn roles_and_ownership() {
        let customer = Principal {
            sub: "c-1".into(),
            roles: vec![Role::Customer],
        };
        assert!(customer.require(&[Role::Customer]).is_ok());
        let e = customer.require(&[Role::Operator]).expect_err("403");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(customer.may_act_for("c-1"));
        assert!(!customer.may_act_for("c-2"));
        let operator = Principal {
            sub: "op".into(),
            roles: vec![Role::Operator],
        };
        assert!(operator.may_act_for("c-2"));
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn a_key_that_is_not_an_ed25519_public_key_is_refused() {
        assert!(Verifier::new(b"nope", "a", "b").is_err());
        assert!(Verifier::new(b"", "a", "b").is_err());
    }

    #[test]
    fn the_base64_line_of_the_key_is_enough() {
        let text = String::from_utf8_lossy(PUBLIC);
        let line = text.lines().nth(1).expect("the key line");
        let v = Verifier::new(line.as_bytes(), "orderflow", "orderflow").expect("verifier");
        let c = claims("c-1", &[Role::Customer], "orderflow", "orderflow", 60);
        assert!(v.verify(&mint(&c, PRIVATE).expect("mint")).is_ok());
    }
}
