//! The campaign's traffic: orders at a steady rate, and for each accepted
//! order a customer who may cancel it and a warehouse that may dispatch and
//! deliver its shipment, each at a random moment. Requests behave as a
//! careful client's: a transport error or a 5xx is retried (an order with
//! the same `Idempotency-Key`), a 4xx is an answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::wait::poll_until;
use crate::{OrderBody, Resp, Service, Stack};

/// How long a request is retried before the client gives up on it.
const GIVE_UP: Duration = Duration::from_secs(90);

/// What the traffic did, for the checks.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Accepted orders (202) and their lines.
    pub accepted: BTreeMap<String, Vec<(String, i64)>>,
    /// Orders whose acceptance was never answered (given up).
    pub unanswered: usize,
    /// Cancel requests by answer status.
    pub cancels: BTreeMap<u16, usize>,
    /// Dispatch requests by answer status.
    pub dispatches: BTreeMap<u16, usize>,
    /// Deliveries made.
    pub deliveries: usize,
}

/// Sends `request` until it gets an answer that is not a transport error
/// or a 5xx, for at most [`GIVE_UP`]; `None` if it never does.
async fn until_answered<F, Fut>(mut request: F) -> Option<Resp>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    poll_until(GIVE_UP, || {
        let r = request();
        async move {
            let r = r.await;
            if r.status == 0 || r.status >= 500 {
                Err(r.describe())
            } else {
                Ok(r)
            }
        }
    })
    .await
    .ok()
}

/// Places orders at `rate` per second for `duration` against `skus`; each
/// accepted order gets its own customer and warehouse task. Returns when
/// every task is done.
pub async fn run(
    stack: Arc<Stack>,
    skus: Vec<String>,
    rate: f64,
    duration: Duration,
    seed: u64,
) -> Traffic {
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tasks = Vec::new();
    let mut n = 0u32;
    while start.elapsed() < duration {
        n += 1;
        let sku = skus[rng.gen_range(0..skus.len())].clone();
        let quantity = rng.gen_range(1..=2);
        let declined = rng.gen_bool(0.1);
        let plan = Plan {
            cancel_after: rng
                .gen_bool(0.3)
                .then(|| Duration::from_millis(rng.gen_range(0..3000))),
            dispatch: rng.gen_bool(0.6),
            deliver: rng.gen_bool(0.5),
        };
        let mut body = OrderBody::new(&sku, quantity);
        if declined {
            body = body.token("tok_chargeDeclined");
        }
        let (stack, traffic) = (stack.clone(), traffic.clone());
        tasks.push(tokio::spawn(async move {
            one_order(&stack, &traffic, body, plan).await;
        }));
        tokio::time::sleep_until(start + interval * n).await;
    }
    for t in tasks {
        t.await.expect("an order task panicked");
    }
    Arc::try_unwrap(traffic)
        .expect("every task is done")
        .into_inner()
}

/// What the customer and the warehouse do with one order.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cancel_after: Option<Duration>,
    dispatch: bool,
    deliver: bool,
}

async fn one_order(stack: &Stack, traffic: &Mutex<Traffic>, body: OrderBody, plan: Plan) {
    let key = uuid::Uuid::new_v4().to_string();
    // The customer registers the card with the payment service first, as a
    // real client does, and orders with the method's id.
    let card = serde_json::json!({"token": body.payment_token, "customerId": body.customer_id});
    let Some(r) =
        until_answered(|| stack.post_json(Service::Payment, "/payment-methods", &card)).await
    else {
        traffic.lock().await.unanswered += 1;
        return;
    };
    if r.status != 201 {
        panic!(
            "POST /payment-methods refused a valid card: {}",
            r.describe()
        );
    }
    let method = r.json["paymentMethodId"].as_str().expect("paymentMethodId");
    let json = body.json_with(method);
    let Some(r) = until_answered(|| stack.post_order_with_key(&json, &key)).await else {
        traffic.lock().await.unanswered += 1;
        return;
    };
    if r.status != 202 {
        panic!("POST /orders refused a valid order: {}", r.describe());
    }
    let id = r.json["orderId"].as_str().expect("orderId").to_owned();
    let lines = body.items.iter().map(|(s, q, _)| (s.clone(), *q)).collect();
    traffic.lock().await.accepted.insert(id.clone(), lines);
    let accepted_at = Instant::now();

    let customer = async {
        let Some(after) = plan.cancel_after else {
            return;
        };
        tokio::time::sleep_until(accepted_at + after).await;
        if let Some(r) = until_answered(|| stack.cancel(&id)).await {
            *traffic.lock().await.cancels.entry(r.status).or_default() += 1;
        }
    };
    let warehouse = async {
        if !plan.dispatch {
            return;
        }
        // Dispatch once the shipment exists (it may never: declined,
        // cancelled first).
        // Polled slowly: hundreds of orders wait at once.
        let mut tick = tokio::time::interval(Duration::from_millis(400));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tick.tick().await;
            let s = stack.shipment(&id).await;
            match s.json["status"].as_str() {
                Some("CREATED") => break,
                Some(_) => return,
                None if Instant::now() >= deadline => return,
                None => {}
            }
        }
        let Some(d) = until_answered(|| stack.dispatch(&id)).await else {
            return;
        };
        *traffic.lock().await.dispatches.entry(d.status).or_default() += 1;
        if d.status == 200 && plan.deliver {
            if let Some(r) = until_answered(|| stack.deliver(&id)).await {
                if r.status == 200 {
                    traffic.lock().await.deliveries += 1;
                }
            }
        }
    };
    tokio::join!(customer, warehouse);
}
