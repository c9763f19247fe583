//! Request limits of every service (tower layers): a request that takes
//! longer than `HTTP_REQUEST_TIMEOUT` is abandoned with 503 `timeout`, and
//! past `HTTP_MAX_CONCURRENT_REQUESTS` requests in progress one more is
//! answered at once with 503 `overloaded` and `Retry-After: 1`, instead of
//! queueing without bound. Both answers are the usual JSON errors, and are
//! counted under the request's route like any other answer (the limits sit
//! inside the metrics layer).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};

use crate::ApiError;

/// `router` with the limits around every route. The concurrency limit is
/// one for the whole router: axum applies a layer to each route (and, for
/// handlers, per request), so a per-layer semaphore would limit nothing.
pub fn apply(router: Router, timeout: Duration, max_concurrent: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                limit_error(e, timeout)
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(max_concurrent))
            .timeout(timeout),
    )
}

/// The JSON answer to a request a limit stopped.
fn limit_error(e: BoxError, timeout: Duration) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(?timeout, "request timed out");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {timeout:?}; nothing it started was committed unless it says so when retried"),
        )
        .into_response();
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in progress; retry shortly",
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    ApiError::internal(e).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt as _;

    use super::*;

    async fn body_json(r: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }

    fn get_req(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_gets_a_json_503() {
        let app = apply(
            Router::new().route("/never", get(std::future::pending::<&'static str>)),
            Duration::from_millis(20),
            8,
        );
        let r = app.oneshot(get_req("/never")).await.expect("response");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(r).await["code"], "timeout");
    }

    #[tokio::test]
    async fn past_the_concurrency_limit_a_request_is_shed_at_once() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (r2, e2) = (release.clone(), entered.clone());
        let app = apply(
            Router::new().route(
                "/hold",
                get(move || {
                    let (release, entered) = (r2.clone(), e2.clone());
                    async move {
                        entered.notify_one();
                        release.notified().await;
                        "done"
                    }
                }),
            ),
            Duration::from_secs(60),
            1,
        );
        let first = tokio::spawn(app.clone().oneshot(get_req("/hold")));
        entered.notified().await;
        let r = app
            .clone()
            .oneshot(get_req("/hold"))
            .await
            .expect("response");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        assert_eq!(body_json(r).await["code"], "overloaded");
        release.notify_one();
        let first = first.await.expect("join").expect("response");
        assert_eq!(first.status(), StatusCode::OK);
        // The slot is free again.
        let (r3, e3) = (release.clone(), entered.clone());
        let again = tokio::spawn(app.oneshot(get_req("/hold")));
        e3.notified().await;
        r3.notify_one();
        assert_eq!(
            again.await.expect("join").expect("response").status(),
            StatusCode::OK
        );
    }
}
