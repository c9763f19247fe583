//! `POST /api/dead-letters/redrive`: the page's "Send back" button. An
//! operator's bearer token (verified like the services verify theirs)
//! sends every dead letter of one event id back to its topic, exactly as
//! `orderctl dlq redrive --event-id` does, and records it on the audit
//! trail with the token's subject as the actor.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use orderflow_events::dead_letters::{originals, read_all, DeadLetter};
use orderflow_service::auth::Claims;
use serde::Deserialize;
use serde_json::json;

use super::{error, Console, DLQ_READ_TIMEOUT};
use crate::audit::Recorder;
use crate::dlq::{redrive_recorded, RedriveBy};

/// The request: which event's dead letters to send back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RedriveRequest {
    event_id: String,
}

/// Sends the dead letters of one event back, for the operator whose token
/// [`require_operator`](super::access::require_operator) let through.
pub(super) async fn redrive(
    State(c): State<Arc<Console>>,
    Extension(claims): Extension<Claims>,
    body: Result<Json<RedriveRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if uuid::Uuid::parse_str(&request.event_id).is_err() {
        return error(StatusCode::BAD_REQUEST, "eventId must be a UUID");
    }
    let kafka = c.kafka.clone();
    let topics = c.dlq_topics();
    let letters: Vec<DeadLetter> = match tokio::task::spawn_blocking(move || {
        read_all(&kafka, &topics, DLQ_READ_TIMEOUT)
    })
    .await
    {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return error(StatusCode::BAD_GATEWAY, &e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let chosen: Vec<&DeadLetter> = letters
        .iter()
        .filter(|d| d.event_id.as_deref() == Some(request.event_id.as_str()))
        .collect();
    let back = originals(&chosen);
    if back.is_empty() {
        return error(StatusCode::NOT_FOUND, "no dead letter has that event id");
    }
    let recorder = Recorder {
        actor: Some(claims.sub.clone()),
        registry: c.registry.clone(),
    };
    let by = RedriveBy {
        recorder: &recorder,
        roles: claims.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        filters: BTreeMap::from([("eventIdFilter".to_owned(), request.event_id.clone())]),
    };
    let landed = match redrive_recorded(&c.kafka, &c.catalog, &by, &back).await {
        Ok(landed) => landed,
        Err(e) => return error(StatusCode::BAD_GATEWAY, &format!("{e:#}")),
    };
    tracing::info!(actor = %claims.sub, event_id = %request.event_id, records = landed.len(), "dead letters sent back");
    Json(json!({ "eventId": request.event_id, "sentBack": landed })).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request};
    use orderflow_service::auth::Verifier;
    use orderflow_service::Role;
    use tower::ServiceExt as _;

    use super::*;
    use crate::console::access::testing::{token, verifier};

    /// POSTs `body` with `token` to a console whose broker is unreachable
    /// (every refusal happens before the broker is asked).
    async fn post(
        verifier: Option<Verifier>,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String, Option<String>) {
        let console = super::super::tests::console_with(verifier);
        let mut req =
            Request::post("/api/dead-letters/redrive").header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let r = super::super::router(console)
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let challenge = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (
            status,
            String::from_utf8_lossy(&bytes).into_owned(),
            challenge,
        )
    }

    const BODY: &str = r#"{"eventId":"01a24394-b902-7420-8184-3917bdac492e"}"#;

    #[tokio::test]
    async fn without_a_key_the_button_is_off() {
        let operator = format!("Bearer {}", token("ops", &[Role::Operator]));
        let (status, body, _) = post(None, Some(&operator), BODY).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("--auth-public-key-file"), "{body}");
    }

    #[tokio::test]
    async fn only_an_operators_valid_token_gets_past_the_door() {
        let (status, _, challenge) = post(Some(verifier()), None, BODY).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"orderctl console\"")
        );

        let (status, _, challenge) = post(Some(verifier()), Some("Bearer not-a-jwt"), BODY).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(challenge.unwrap().contains("invalid_token"));

        let (status, _, _) = post(Some(verifier()), Some("Basic b3BzOm9wcw=="), BODY).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let customer = format!("Bearer {}", token("c-1", &[Role::Customer]));
        let (status, body, _) = post(Some(verifier()), Some(&customer), BODY).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }

    #[tokio::test]
    async fn an_operators_bad_request_is_refused_with_the_reason() {
        let operator = format!("Bearer {}", token("ops", &[Role::Operator]));
        for (body, says) in [
            ("not json", "JSON"),
            (r#"{"eventId":"nope"}"#, "must be a UUID"),
            (
                r#"{"eventId":"01a24394-b902-7420-8184-3917bdac492e","all":true}"#,
                "unknown field",
            ),
            ("{}", "missing field"),
        ] {
            let (status, text, _) = post(Some(verifier()), Some(&operator), body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
        }
    }
}
