//! HTTP client helpers on a [`Stack`]; [`wait`] has the waits for the
//! saga, [`checks`] the assertions over timelines and metrics.

mod checks;
mod wait;

pub use checks::{assert_causal_chain, count_events, parse_metrics};

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

pub use order_service::api::view::{AcceptedJson, OrderJson, TimelineEventJson, TimelineJson};
pub use order_service::domain::saga::Status;
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::body::OrderBody;
use crate::mail::{read_maildir, Mail};
use crate::stack::{Service, Stack};
use crate::wait::eventually;

/// Statuses that end the automatic saga.
pub const TERMINAL: [Status; 3] = [Status::Shipped, Status::Delivered, Status::Cancelled];

/// An HTTP answer (status 0: the request itself failed, `text` says why).
#[derive(Debug, Clone)]
pub struct Resp {
    /// `METHOD url`.
    pub request: String,
    /// HTTP status, 0 on a transport error.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body text (or the transport error).
    pub text: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: Value,
}

impl Resp {
    /// The error `code` of a JSON error body ("" if none).
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    /// The body as the API's own type (`order_service::api::view`, ...).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.json.clone())
            .map_err(|e| format!("{e} in the answer of {}", self.describe()))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// One line for assertion messages.
    pub fn describe(&self) -> String {
        let ct = self.header(CONTENT_TYPE.as_str()).unwrap_or("-");
        format!(
            "{} -> {} (content-type {ct}) {}",
            self.request, self.status, self.text
        )
    }

    /// Panics unless the status is `status`.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status: {}",
            self.describe()
        );
        self
    }

    /// Panics unless this is a JSON error `{"code","message",...}` with a
    /// 4xx status.
    #[track_caller]
    pub fn expect_json_error(&self) {
        assert!(
            (400..500).contains(&self.status),
            "expected a 4xx: {}",
            self.describe()
        );
        let ct = self.header(CONTENT_TYPE.as_str()).unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error is not JSON: {}",
            self.describe()
        );
        assert!(
            self.json["code"].as_str().is_some_and(|c| !c.is_empty())
                && self.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error lacks code/message: {}",
            self.describe()
        );
    }
}

/// Sends a request and collects the answer; never panics.
pub async fn send(request: RequestBuilder) -> Resp {
    let (client, req) = request.build_split();
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            return Resp {
                request: "?".into(),
                status: 0,
                headers: HeaderMap::new(),
                text: format!("could not build the request: {e}"),
                json: Value::Null,
            }
        }
    };
    let what = format!("{} {}", req.method(), req.url());
    match client.execute(req).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let text = r.text().await.unwrap_or_else(|e| format!("<body: {e}>"));
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            Resp {
                request: what,
                status,
                headers,
                text,
                json,
            }
        }
        Err(e) => Resp {
            request: what,
            status: 0,
            headers: HeaderMap::new(),
            text: format!("request failed: {e}"),
            json: Value::Null,
        },
    }
}

impl Stack {
    /// A request to a service (`path` starts with `/`).
    pub fn request(&self, method: Method, svc: Service, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url(svc)))
    }

    /// `GET` on a service.
    pub async fn get(&self, svc: Service, path: &str) -> Resp {
        send(self.request(Method::GET, svc, path)).await
    }

    /// How many `event_type` records `svc`'s consumer skipped as already
    /// applied (its inbox knew them), from its `/metrics`.
    pub async fn duplicates_seen(&self, svc: Service, event_type: &str) -> f64 {
        let r = self.get(svc, "/metrics").await.expect(200);
        let wanted = format!(r#"event_type="{event_type}""#);
        checks::parse_metrics(&r.text)
            .into_iter()
            .filter(|(series, _)| {
                series.starts_with("orderflow_events_consumed_total{")
                    && series.contains(&wanted)
                    && series.contains(r#"outcome="duplicate""#)
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// `POST` a JSON body to a service.
    pub async fn post_json(&self, svc: Service, path: &str, body: &Value) -> Resp {
        send(self.request(Method::POST, svc, path).json(body)).await
    }

    /// `POST` without a body.
    pub async fn post_empty(&self, svc: Service, path: &str) -> Resp {
        send(self.request(Method::POST, svc, path)).await
    }

    /// `PUT` a JSON body to a service.
    pub async fn put_json(&self, svc: Service, path: &str, body: &Value) -> Resp {
        send(self.request(Method::PUT, svc, path).json(body)).await
    }

    /// `POST /orders`.
    pub async fn post_order(&self, body: &Value) -> Resp {
        self.post_json(Service::Order, "/orders", body).await
    }

    /// `POST /orders` with an `Idempotency-Key`.
    pub async fn post_order_with_key(&self, body: &Value, key: &str) -> Resp {
        send(
            self.request(Method::POST, Service::Order, "/orders")
                .header("Idempotency-Key", key)
                .json(body),
        )
        .await
    }

    /// The payment method of `customer` paying with `token`, registered
    /// with the payment service once per stack (as a service, for the
    /// customer).
    pub async fn payment_method(&self, customer: &str, token: &str) -> String {
        let key = (customer.to_owned(), token.to_owned());
        let mut known = self.payment_methods.lock().await;
        if let Some(id) = known.get(&key) {
            return id.clone();
        }
        let r = self
            .post_json(
                Service::Payment,
                "/payment-methods",
                &serde_json::json!({"token": token, "customerId": customer}),
            )
            .await
            .expect(201);
        let id = r.json["paymentMethodId"]
            .as_str()
            .unwrap_or_else(|| panic!("no paymentMethodId: {}", r.describe()))
            .to_owned();
        known.insert(key, id.clone());
        id
    }

    /// The `POST /orders` body of `body`, with the payment method of its
    /// customer and token.
    pub async fn order_json(&self, body: &OrderBody) -> Value {
        let method = self
            .payment_method(&body.customer_id, &body.payment_token)
            .await;
        body.json_with(&method)
    }

    /// Places an order and checks the acceptance (202, `PENDING`,
    /// `Location: /orders/{id}`); returns its id.
    #[track_caller]
    pub fn create_order<'a>(&'a self, body: &'a OrderBody) -> impl Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.post_order(&self.order_json(body).await).await;
            assert_eq!(r.status, 202, "POST /orders ({caller}): {}", r.describe());
            let accepted: AcceptedJson = r.parse().unwrap_or_else(|e| panic!("{e}"));
            let id = accepted.order_id.to_string();
            assert_eq!(accepted.status, Status::Pending, "{}", r.describe());
            let location = r.header(LOCATION.as_str()).unwrap_or_default();
            assert!(
                location.ends_with(&format!("/orders/{id}")),
                "Location header {location:?} does not name the order: {}",
                r.describe()
            );
            id
        }
    }

    /// `GET /orders/{id}` (must answer 200).
    pub async fn order(&self, id: &str) -> OrderJson {
        self.get(Service::Order, &format!("/orders/{id}"))
            .await
            .expect(200)
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The events of `GET /orders/{id}/timeline` (must answer 200).
    pub async fn timeline(&self, id: &str) -> Vec<TimelineEventJson> {
        let r = self
            .get(Service::Order, &format!("/orders/{id}/timeline"))
            .await
            .expect(200);
        let timeline: TimelineJson = r.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            timeline.order_id.to_string(),
            id,
            "timeline of another order: {}",
            r.text
        );
        timeline.events
    }

    /// Event types of the timeline, in order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        self.timeline(id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// `GET /inventory/{sku}` (must answer 200).
    pub async fn inventory(&self, sku: &str) -> Value {
        self.get(Service::Inventory, &format!("/inventory/{sku}"))
            .await
            .expect(200)
            .json
    }

    /// `PUT /inventory/{sku}` `{"available": n}` with the catalog price
    /// [`OrderBody::new`] sends (1999 EUR), then waits until the order
    /// service's catalogue reports `available == n`.
    pub async fn set_stock(&self, sku: &str, n: i64) {
        let r = self
            .put_json(
                Service::Inventory,
                &format!("/inventory/{sku}"),
                &serde_json::json!({ "available": n, "price": 1999, "currency": "EUR" }),
            )
            .await;
        assert!(
            r.status == 200 || r.status == 201,
            "PUT /inventory/{sku}: {}",
            r.describe()
        );
        assert_eq!(r.json["sku"], sku, "{}", r.describe());
        assert_eq!(r.json["available"], n, "{}", r.describe());
        self.wait_for_json(
            Service::Order,
            &format!("/catalog/{sku}"),
            &format!("the order service to know {sku} with {n} available"),
            |c| c["available"] == n,
        )
        .await;
    }

    /// `GET /payments/{orderId}`.
    pub async fn payment(&self, id: &str) -> Resp {
        self.get(Service::Payment, &format!("/payments/{id}")).await
    }

    /// `GET /shipments/{orderId}`.
    pub async fn shipment(&self, id: &str) -> Resp {
        self.get(Service::Shipping, &format!("/shipments/{id}"))
            .await
    }

    /// `GET /notifications?orderId=`.
    pub async fn notifications(&self, id: &str) -> Resp {
        self.get(
            Service::Notification,
            &format!("/notifications?orderId={id}"),
        )
        .await
    }

    /// `POST /orders/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Resp {
        self.post_empty(Service::Order, &format!("/orders/{id}/cancel"))
            .await
    }

    /// `POST /shipments/{id}/dispatch`.
    pub async fn dispatch(&self, id: &str) -> Resp {
        self.post_empty(Service::Shipping, &format!("/shipments/{id}/dispatch"))
            .await
    }

    /// `POST /shipments/{id}/deliver`.
    pub async fn deliver(&self, id: &str) -> Resp {
        self.post_empty(Service::Shipping, &format!("/shipments/{id}/deliver"))
            .await
    }
}
