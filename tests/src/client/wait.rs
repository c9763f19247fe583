//! Waiting on a [`Stack`] for the saga: an order's status, its timeline,
//! e-mails, stock, any JSON answer, each with a deadline.

use super::*;

impl Stack {
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

    /// Waits until every invariant of the saga holds against `expected`
    /// and every outbox is empty (`orderflow_stack::check`, the checker of
    /// the fault campaign and `orderctl bench run`); panics with what is
    /// still broken after the saga deadline.
    pub async fn wait_for_invariants(&self, expected: &orderflow_stack::check::Expected) {
        use orderflow_stack::check;
        self.wait_for("every invariant to hold", || async {
            let state = check::read_state(self)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let broken: Vec<String> = check::check(&state, expected)
                .into_iter()
                .filter(|i| !i.violations.is_empty())
                .map(|i| {
                    format!(
                        "{}: {:?}",
                        i.name,
                        &i.violations[..i.violations.len().min(5)]
                    )
                })
                .collect();
            if broken.is_empty() && state.pending() == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{} outbox rows pending; broken: {broken:?}",
                    state.pending()
                ))
            }
        })
        .await;
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
    pub async fn wait_for_order<P>(&self, id: &str, what: &str, pred: P) -> OrderJson
    where
        P: Fn(&OrderJson) -> bool,
    {
        let path = format!("/orders/{id}");
        let result = crate::wait::poll_until(self.timeout, || async {
            let r = self.get(Service::Order, &path).await;
            match r.parse::<OrderJson>() {
                Ok(order) if r.status == 200 && pred(&order) => Ok(order),
                _ => Err(r.describe()),
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

    /// Waits until the order has `status` (a wire name, e.g. `SHIPPED`).
    pub async fn wait_status(&self, id: &str, status: &str) -> OrderJson {
        let wanted =
            Status::parse(status).unwrap_or_else(|| panic!("{status:?} is not an order status"));
        self.wait_for_order(id, &format!("status {status}"), |o| o.status == wanted)
            .await
    }

    /// Waits until the order is SHIPPED, DELIVERED or CANCELLED.
    pub async fn wait_terminal(&self, id: &str) -> OrderJson {
        self.wait_for_order(id, "a terminal status", |o| TERMINAL.contains(&o.status))
            .await
    }

    /// Waits until the timeline satisfies `pred`; returns it.
    pub async fn wait_for_timeline<P>(
        &self,
        id: &str,
        what: &str,
        pred: P,
    ) -> Vec<TimelineEventJson>
    where
        P: Fn(&[TimelineEventJson]) -> bool,
    {
        let path = format!("/orders/{id}/timeline");
        self.wait_for(&format!("the timeline of {id}: {what}"), || async {
            let r = self.get(Service::Order, &path).await;
            match r.parse::<TimelineJson>() {
                Ok(t) if r.status == 200 && pred(&t.events) => Ok(t.events),
                _ => Err(r.describe()),
            }
        })
        .await
    }

    /// Waits until the timeline holds every event type in `types`.
    pub async fn wait_for_events(&self, id: &str, types: &[&str]) -> Vec<TimelineEventJson> {
        self.wait_for_timeline(id, &format!("contains {types:?}"), |events| {
            let have: HashSet<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            types.iter().all(|t| have.contains(t))
        })
        .await
    }

    /// Waits until `orderctl dlq list --json` counts `count` records with
    /// `reason` on the dead-letter topic `dlq` (its full name); returns the
    /// whole summary.
    pub async fn wait_for_dead_letters(&self, dlq: &str, reason: &str, count: u64) -> Value {
        self.wait_for(&format!("{count} {reason} record(s) on {dlq}"), || async {
            let (ok, text) = self.orderctl(&["dlq", "list", "--json"], &[]).await;
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if ok && v[dlq]["byReason"][reason] == count {
                Ok(v)
            } else {
                Err(text)
            }
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
