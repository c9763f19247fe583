//! Who may use the page's API: every `/api` route, read or write, needs an
//! operator's bearer token, verified with the key the services verify
//! theirs with (`--auth-public-key-file`). The page and its assets carry no
//! data and are served to anyone.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use orderflow_service::auth::Claims;
use orderflow_service::Role;

use super::{error, Console};

/// 401 with the challenge a bearer-token API answers with.
fn unauthorized(message: &str, invalid: bool) -> Response {
    let challenge = if invalid {
        "Bearer realm=\"orderctl console\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"orderctl console\""
    };
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The middleware in front of every `/api` route: lets a request through
/// with its operator's [`Claims`] in its extensions, or answers 503 (no
/// key to verify with), 401 or 403 without running the handler.
pub(super) async fn require_operator(
    State(c): State<Arc<Console>>,
    mut req: Request,
    next: Next,
) -> Response {
    match operator(&c, req.headers()) {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(refused) => *refused,
    }
}

/// The operator behind the request's bearer token, or the answer that
/// refuses the request.
fn operator(c: &Console, headers: &HeaderMap) -> Result<Claims, Box<Response>> {
    const WHAT: &str = "the event-flow page's API";
    let Some(verifier) = &c.verifier else {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{WHAT} is off: start the console with --auth-public-key-file \
                 (AUTH_PUBLIC_KEY_FILE), the key the services verify tokens with"
            ),
        )));
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Box::new(unauthorized(
            &format!("{WHAT} needs an operator's bearer token"),
            false,
        )));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Box::new(unauthorized(
                "the Authorization header must be `Bearer <token>`",
                true,
            ))
        })?;
    let claims = verifier
        .verify(token)
        .map_err(|e| Box::new(unauthorized(&format!("the token is not valid: {e}"), true)))?;
    if !claims.roles.contains(&Role::Operator) {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            &format!("{WHAT} needs the operator role"),
        )));
    }
    Ok(claims)
}

#[cfg(test)]
pub(super) mod testing {
    use std::path::Path;
    use std::time::Duration;

    use orderflow_service::auth::Verifier;
    use orderflow_service::Role;

    use crate::token::{KeyArgs, DEV_KEY};

    fn root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// A token signed with the development key.
    pub(crate) fn token(sub: &str, roles: &[Role]) -> String {
        KeyArgs {
            key_file: root().join(DEV_KEY),
            issuer: "orderflow".into(),
            audience: "orderflow".into(),
        }
        .mint(sub, roles, Duration::from_secs(60))
        .expect("a token")
    }

    /// The verifier of the development key's tokens.
    pub(crate) fn verifier() -> Verifier {
        let public = std::fs::read(root().join("deploy/dev-keys/jwt-dev.pub.pem")).expect("pub");
        Verifier::new(&public, "orderflow", "orderflow").expect("verifier")
    }
}
