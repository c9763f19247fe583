//! HTTP Basic authentication with a role per user, for every route but the
//! health probes.
//!
//! Users come from a file in the format of Confluent Schema Registry's
//! `PropertyFileLoginModule` (Jetty's property file), one per line:
//!
//! ```text
//! # name: password,role[,role…]
//! orderflow-admin: 9f2c…,admin
//! orderflow-service: 41be…,read
//! ci: SHA256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8,write
//! ```
//!
//! A password is kept as given, or as `SHA256:<hex>` of it. Roles, each
//! including the ones before it:
//!
//! - `read`: every `GET`, looking a schema up under a subject
//!   (`POST /subjects/{subject}`) and compatibility checks
//!   (`POST /compatibility/…`): what a serialiser or deserialiser needs;
//! - `write`: registering schemas (`POST /subjects/{subject}/versions`);
//! - `admin`: deleting subjects and versions, and changing the
//!   compatibility level (`PUT`/`DELETE /config…`).
//!
//! Confluent's open-source registry authenticates with such a file but does
//! not authorise by role; this registry does. `/health/live` and
//! `/health/ready` stay open, for probes. A missing or wrong password gets
//! `401` with `WWW-Authenticate: Basic realm="schema-registry"` (error code
//! 40101); a role too low gets `403` (40301).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::extract::SrJson;

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read schemas, look them up, check compatibility.
    Read,
    /// Also register schemas.
    Write,
    /// Also delete, and change compatibility levels.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

struct User {
    /// SHA-256 of the password.
    digest: [u8; 32],
    role: Role,
}

/// The users a registry accepts.
pub struct Users {
    by_name: HashMap<String, User>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the digests.
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct UsersFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the password).
    pub message: String,
}

impl Users {
    /// Parses a users file (see the module documentation). An empty file
    /// (no users) is an error: it would lock everyone out.
    pub fn parse(text: &str) -> Result<Self, UsersFileError> {
        let mut by_name = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let err = |message: String| UsersFileError {
                line: i + 1,
                message,
            };
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| err("expected `name: password,role`".to_owned()))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(err("the user name is empty".to_owned()));
            }
            let mut parts = rest.split(',');
            let password = parts.next().unwrap_or_default().trim();
            if password.is_empty() {
                return Err(err(format!("user {name:?} has no password")));
            }
            let digest = match password.strip_prefix("SHA256:") {
                Some(hex_digest) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32);
                    let bytes = bytes.ok_or_else(|| {
                        err(format!("user {name:?}: SHA256: needs 64 hex digits"))
                    })?;
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&bytes);
                    d
                }
                None => Sha256::digest(password.as_bytes()).into(),
            };
            let mut role = None;
            for r in parts {
                let parsed = Role::parse(r).ok_or_else(|| {
                    err(format!(
                        "user {name:?}: unknown role {:?} (read, write, admin)",
                        r.trim()
                    ))
                })?;
                role = role.max(Some(parsed));
            }
            let role =
                role.ok_or_else(|| err(format!("user {name:?} has no role (read, write, admin)")))?;
            if by_name
                .insert(name.to_owned(), User { digest, role })
                .is_some()
            {
                return Err(err(format!("user {name:?} is listed twice")));
            }
        }
        if by_name.is_empty() {
            return Err(UsersFileError {
                line: 0,
                message: "no users: nobody could use the registry".to_owned(),
            });
        }
        Ok(Self { by_name })
    }

    /// The role of `name` when `password` is right.
    fn authenticate(&self, name: &str, password: &str) -> Option<Role> {
        let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        // Compared as digests, in constant time: neither the length nor a
        // prefix of the password shows in the timing.
        let (stored, known) = match self.by_name.get(name) {
            Some(u) => (u.digest, true),
            None => ([0u8; 32], false),
        };
        let differs = stored
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (known && differs == 0).then(|| self.by_name[name].role)
    }
}

/// The role a request needs; `None` for the open health probes.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/health/live" || path == "/health/ready" {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match *method {
        Method::GET | Method::HEAD => Role::Read,
        Method::POST => match segments.as_slice() {
            // Register a schema under a subject.
            ["subjects", _, "versions"] => Role::Write,
            // Look a schema up, check compatibility.
            ["subjects", _] | ["compatibility", ..] => Role::Read,
            _ => Role::Admin,
        },
        _ => Role::Admin,
    })
}

#[derive(Serialize)]
struct ErrorBody {
    error_code: u32,
    message: String,
}

fn unauthorized(message: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        SrJson(ErrorBody {
            error_code: 40101,
            message: message.to_owned(),
        }),
    )
        .into_response();
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"schema-registry\""),
    );
    r
}

/// `name:password` from an `Authorization: Basic …` header.
fn credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The middleware: lets a request through when its user may do what it
/// asks, else answers 401 or 403 without running the handler.
pub async fn require(State(users): State<Arc<Users>>, req: Request, next: Next) -> Response {
    let Some(needed) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some((name, password)) = credentials(&req) else {
        return unauthorized("Unauthorized: HTTP Basic credentials are required");
    };
    match users.authenticate(&name, &password) {
        None => unauthorized("Unauthorized: unknown user or wrong password"),
        Some(role) if role < needed => {
            tracing::info!(user = %name, role = role.name(), needed = needed.name(),
                method = %req.method(), path = req.uri().path(), "registry request refused");
            (
                StatusCode::FORBIDDEN,
                SrJson(ErrorBody {
                    error_code: 40301,
                    message: format!(
                        "User '{name}' has role '{}'; {} {} needs '{}'",
                        role.name(),
                        req.method(),
                        req.uri().path(),
                        needed.name()
                    ),
                }),
            )
                .into_response()
        }
        Some(_) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# users\n\
        admin: s3cret,read,admin\n\
        \n\
        svc: SHA256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b,read\n\
        ci : pass word , write \n";

    #[test]
    fn parses_users_roles_and_digests() {
        let users = Users::parse(FILE).expect("valid file");
        assert_eq!(users.authenticate("admin", "s3cret"), Some(Role::Admin));
        // sha256("secret")
        assert_eq!(users.authenticate("svc", "secret"), Some(Role::Read));
        assert_eq!(users.authenticate("ci", "pass word"), Some(Role::Write));
        assert_eq!(users.authenticate("admin", "s3cret "), None);
        assert_eq!(users.authenticate("admin", ""), None);
        assert_eq!(users.authenticate("nobody", "s3cret"), None);
        assert!(!format!("{users:?}").contains("2bb80d"));
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, line, part) in [
            ("a", 1, "expected"),
            ("a: ,read", 1, "no password"),
            ("# x\na: p", 2, "no role"),
            ("a: p,root", 1, "unknown role"),
            ("a: p,read\na: q,read", 2, "twice"),
            (": p,read", 1, "empty"),
            ("a: SHA256:abc,read", 1, "64 hex"),
            ("# only comments\n", 0, "no users"),
        ] {
            let e = Users::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}");
            assert!(e.message.contains(part), "{text}: {}", e.message);
            assert!(!e.to_string().contains(" q"), "no password in errors");
        }
    }

    #[test]
    fn the_compose_users_file_is_one_this_registry_reads() {
        let text = include_str!("../../../deploy/schema-registry/users.properties");
        let users = Users::parse(text).expect("deploy/schema-registry/users.properties");
        let admin = users.authenticate("orderflow-admin", "orderflow-admin");
        assert_eq!(admin, Some(Role::Admin));
        let service = users.authenticate("orderflow-service", "orderflow-service");
        assert_eq!(service, Some(Role::Read));
    }

    #[test]
    fn roles_by_method_and_path() {
        let role = |m: Method, p: &str| required_role(&m, p);
        assert_eq!(role(Method::GET, "/health/ready"), None);
        assert_eq!(role(Method::GET, "/health/live"), None);
        assert_eq!(role(Method::GET, "/"), Some(Role::Read));
        assert_eq!(role(Method::GET, "/schemas/ids/1"), Some(Role::Read));
        assert_eq!(role(Method::POST, "/subjects/s"), Some(Role::Read));
        assert_eq!(
            role(Method::POST, "/compatibility/subjects/s/versions/latest"),
            Some(Role::Read)
        );
        assert_eq!(
            role(Method::POST, "/subjects/s/versions"),
            Some(Role::Write)
        );
        assert_eq!(role(Method::PUT, "/config"), Some(Role::Admin));
        assert_eq!(role(Method::PUT, "/config/s"), Some(Role::Admin));
        assert_eq!(role(Method::DELETE, "/subjects/s"), Some(Role::Admin));
        assert_eq!(
            role(Method::DELETE, "/subjects/s/versions/1"),
            Some(Role::Admin)
        );
        assert_eq!(role(Method::POST, "/anything/else"), Some(Role::Admin));
        assert_eq!(role(Method::PATCH, "/subjects/s"), Some(Role::Admin));
    }
}
