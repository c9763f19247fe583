//! HTTP client helpers and saga waits on a [`Stack`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::body::OrderBody;
use crate::mail::{read_maildir, Mail};
use crate::stack::{Service, Stack};
use crate::wait::eventually;

/// Statuses that end the automatic saga.
pub const TERMINAL: [&str; 3] = ["SHIPPED", "DELIVERED", "CANCELLED"];

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

fn status_of(order: &Value) -> &str {
    order["status"].as_str().unwrap_or("")
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

    /// Places an order and checks the acceptance (202, `PENDING`,
    /// `Location: /orders/{id}`); returns its id.
    #[track_caller]
    pub fn create_order<'a>(&'a self, body: &'a OrderBody) -> impl Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.post_order(&body.json()).await;
            assert_eq!(r.status, 202, "POST /orders ({caller}): {}", r.describe());
            let id = r.json["orderId"]
                .as_str()
                .unwrap_or_else(|| panic!("no orderId: {}", r.describe()))
                .to_owned();
            assert!(
                uuid::Uuid::parse_str(&id).is_ok(),
                "orderId is not a UUID: {}",
                r.describe()
            );
            assert_eq!(r.json["status"], "PENDING", "{}", r.describe());
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
    pub async fn order(&self, id: &str) -> Value {
        self.get(Service::Order, &format!("/orders/{id}"))
            .await
            .expect(200)
            .json
    }

    /// The events of `GET /orders/{id}/timeline` (must answer 200).
    pub async fn timeline(&self, id: &str) -> Vec<Value> {
        let r = self
            .get(Service::Order, &format!("/orders/{id}/timeline"))
            .await
            .expect(200);
        assert_eq!(
            r.json["orderId"], id,
            "timeline of another order: {}",
            r.text
        );
        r.json["events"]
            .as_array()
            .unwrap_or_else(|| panic!("timeline without events: {}", r.text))
            .clone()
    }

    /// Event types of the timeline, in order.
    pub async fn event_types(&self, id: &str) -> Vec<String> {
        self.timeline(id)
            .await
            .iter()
            .map(|e| e["eventType"].as_str().unwrap_or("").to_owned())
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

    /// Polls `check` until it is `Ok` or the stack's saga deadline passes;
    /// the panic names `what`, the last state and the logs.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        self.wait_for_within(what, self.timeout, check).await
    }

    /// [`Stack::wait_for`] with an explicit deadline.
    pub async fn wait_for_within<T, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        eventually(
            &format!("{what} (stack {})", self.id),
            &self.diagnostics(),
            timeout,
            check,
        )
        .await
    }

    /// Polls `GET path` on `service` until it answers 200 with a body for
    /// which `pred` holds; returns that body.
    pub async fn wait_for_json<P>(&self, service: Service, path: &str, what: &str, pred: P) -> Value
    where
        P: Fn(&Value) -> bool,
    {
        self.wait_for(what, || async {
            let r = self.get(service, path).await;
            if r.status == 200 && pred(&r.json) {
                Ok(r.json)
            } else {
                Err(r.describe())
            }
        })
        .await
    }

    /// Polls `GET /orders/{id}` until `pred` holds; returns that order. On
    /// timeout panics with the last order seen, its timeline and the logs.
    pub async fn wait_for_order<P>(&self, id: &str, what: &str, pred: P) -> Value
    where
        P: Fn(&Value) -> bool,
    {
        let path = format!("/orders/{id}");
        let result = crate::wait::poll_until(self.timeout, || async {
            let r = self.get(Service::Order, &path).await;
            if r.status == 200 && pred(&r.json) {
                Ok(r.json)
            } else {
                Err(r.describe())
            }
        })
        .await;
        match result {
            Ok(order) => order,
            Err(last) => {
                let timeline = self
                    .get(Service::Order, &format!("/orders/{id}/timeline"))
                    .await;
                panic!(
                    "timed out after {:?} waiting for order {id}: {what} (stack {})\nlast seen: {last}\ntimeline: {}\n{}",
                    self.timeout,
                    self.id,
                    timeline.text,
                    self.diagnostics()
                )
            }
        }
    }

    /// Waits until the order has `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for_order(id, &format!("status {status}"), |o| status_of(o) == status)
            .await
    }

    /// Waits until the order is SHIPPED, DELIVERED or CANCELLED.
    pub async fn wait_terminal(&self, id: &str) -> Value {
        self.wait_for_order(id, "a terminal status", |o| {
            TERMINAL.contains(&status_of(o))
        })
        .await
    }

    /// Waits until the timeline satisfies `pred`; returns it.
    pub async fn wait_for_timeline<P>(&self, id: &str, what: &str, pred: P) -> Vec<Value>
    where
        P: Fn(&[Value]) -> bool,
    {
        let path = format!("/orders/{id}/timeline");
        self.wait_for(&format!("the timeline of {id}: {what}"), || async {
            let r = self.get(Service::Order, &path).await;
            match r.json["events"].as_array() {
                Some(events) if r.status == 200 && pred(events) => Ok(events.clone()),
                _ => Err(r.describe()),
            }
        })
        .await
    }

    /// Waits until the timeline holds every event type in `types`.
    pub async fn wait_for_events(&self, id: &str, types: &[&str]) -> Vec<Value> {
        self.wait_for_timeline(id, &format!("contains {types:?}"), |events| {
            let have: HashSet<&str> = events
                .iter()
                .filter_map(|e| e["eventType"].as_str())
                .collect();
            types.iter().all(|t| have.contains(t))
        })
        .await
    }

    /// Every e-mail the SMTP listener received so far.
    pub fn mails(&self) -> Vec<Mail> {
        read_maildir(self.maildir())
    }

    /// Waits until the received e-mails satisfy `pred`; returns them all.
    pub async fn wait_for_mails<P>(&self, what: &str, pred: P) -> Vec<Mail>
    where
        P: Fn(&[Mail]) -> bool,
    {
        self.wait_for(&format!("e-mails: {what}"), || async {
            let mails = self.mails();
            if pred(&mails) {
                Ok(mails)
            } else {
                Err(format!(
                    "{} mail(s): {}",
                    mails.len(),
                    mails
                        .iter()
                        .map(Mail::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        })
        .await
    }

    /// `(available, reserved, shipped)` of a SKU, read from the inventory
    /// database's `stock` table in one statement.
    pub async fn stock_row(&self, sku: &str) -> Option<(i64, i64, i64)> {
        let pool = self.db(Service::Inventory).await;
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT available::bigint, reserved::bigint, shipped::bigint FROM stock WHERE sku = $1",
        )
        .bind(sku)
        .fetch_optional(&pool)
        .await
        .unwrap_or_else(|e| panic!("reading the stock row of {sku}: {e}"))
    }

    /// Waits until `GET /inventory/{sku}` shows `available` and `reserved`
    /// (and `shipped`, if given).
    pub async fn wait_for_stock(
        &self,
        sku: &str,
        available: i64,
        reserved: i64,
        shipped: Option<i64>,
    ) -> Value {
        let path = format!("/inventory/{sku}");
        self.wait_for(
            &format!("{sku}: available {available}, reserved {reserved}, shipped {shipped:?}"),
            || async {
                let r = self.get(Service::Inventory, &path).await;
                let ok = r.status == 200
                    && r.json["available"] == available
                    && r.json["reserved"] == reserved
                    && shipped.is_none_or(|s| r.json["shipped"] == s);
                if ok {
                    Ok(r.json)
                } else {
                    Err(r.describe())
                }
            },
        )
        .await
    }

    /// A SKU unique to this stack and test (`<tag>-<stack id>`).
    pub fn sku(&self, tag: &str) -> String {
        format!("{tag}-{}", self.id.trim_start_matches("e2e_")).to_ascii_uppercase()
    }
}

/// Asserts the saga's causal chain over a timeline: every event carries the
/// first event's `correlationId` (which is the order id), the first has no
/// `causationId`, every other one names an event that appears earlier.
#[track_caller]
pub fn assert_causal_chain(order_id: &str, events: &[Value]) {
    assert!(!events.is_empty(), "empty timeline of {order_id}");
    let dump = || serde_json::to_string_pretty(events).unwrap_or_default();
    let first = &events[0];
    let correlation = first["correlationId"].as_str().unwrap_or_default();
    assert!(
        !correlation.is_empty(),
        "first event has no correlationId:\n{}",
        dump()
    );
    assert_eq!(
        correlation,
        order_id,
        "correlationId is not the order id (docs/saga.md):\n{}",
        dump()
    );
    let causation = &first["causationId"];
    assert!(
        causation.is_null() || causation.as_str() == Some(""),
        "the first event ({}) has a causationId {causation}:\n{}",
        first["eventType"],
        dump()
    );
    let mut seen: HashSet<&str> = HashSet::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        let id = e["eventId"].as_str().unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "event {i} has no UUID eventId:\n{}",
            dump()
        );
        assert!(ids.insert(id), "eventId {id} appears twice:\n{}", dump());
        assert_eq!(
            e["correlationId"].as_str(),
            Some(correlation),
            "event {i} ({}) has another correlationId:\n{}",
            e["eventType"],
            dump()
        );
        if i > 0 {
            let cause = e["causationId"].as_str().unwrap_or_default();
            assert!(
                seen.contains(cause),
                "event {i} ({}) has causationId {cause:?}, which is not an earlier event of the timeline:\n{}",
                e["eventType"],
                dump()
            );
        }
        seen.insert(id);
    }
}

/// How many events of `event_type` a timeline holds.
pub fn count_events(events: &[Value], event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e["eventType"] == event_type)
        .count()
}

/// The samples of an OpenMetrics text page: `name{labels}` -> value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}
