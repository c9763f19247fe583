//! The fault campaign: a bounded load of orders, customer cancels and
//! dispatches against a stack of real processes with its own broker
//! (durable), PostgreSQL, schema registry and SMTP server, while faults are
//! injected at random moments from a seed; then, with every part back, it
//! waits for the sagas to settle and checks the invariants from the
//! databases, the topics and the mailbox.
//!
//! `scripts/chaos` runs it (`orderflow-chaos --help`); `tests/chaos.rs`
//! runs a short campaign as part of `scripts/test`.

pub mod faults;
pub mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::{Service, Stack, StackOptions};
use faults::Kind;
use orderflow_stack::check::{self, Accepted, Expected, Invariant};

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of every random choice (the faults, their order and moments,
    /// the orders and what their customers and the warehouse do).
    pub seed: u64,
    /// How long orders are placed and faults injected (at least one round
    /// of every fault kind is injected, however short this is).
    pub duration: Duration,
    /// Orders per second.
    pub rate: f64,
    /// `ORDER_SAGA_TIMEOUT`: the SMTP outage lasts longer than this.
    pub saga_timeout: Duration,
    /// How long the sagas may take to settle once every part is back.
    pub settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(60),
            rate: 3.0,
            saga_timeout: Duration::from_secs(8),
            settle: Duration::from_secs(180),
        }
    }
}

/// What a campaign found.
#[derive(Debug)]
pub struct Report {
    /// The text table.
    pub table: String,
    /// Every invariant with its violations.
    pub invariants: Vec<Invariant>,
}

impl Report {
    /// Total violations of every invariant.
    pub fn violations(&self) -> usize {
        self.invariants.iter().map(|i| i.violations.len()).sum()
    }
}

/// SKUs and their starting stock: three with enough for every order of
/// the run (scaled with its rate and length), one with so little that it
/// runs out.
fn skus(stack: &Stack, opts: &Options) -> BTreeMap<String, i64> {
    // Up to two units per order, a quarter of the orders per SKU.
    let plenty = (opts.rate * opts.duration.as_secs_f64()).ceil() as i64;
    [("A", plenty), ("B", plenty), ("C", plenty), ("D", 20)]
        .into_iter()
        .map(|(t, n)| (stack.sku(&format!("CHAOS-{t}")), n))
        .collect()
}

/// Runs a campaign and returns its report.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let stack = Arc::new(
        Stack::start(StackOptions {
            own_broker: true,
            own_postgres: true,
            own_registry: true,
            saga_timeout: Some(format!("{}ms", opts.saga_timeout.as_millis())),
            deadline_check_interval: Some("500ms".into()),
            ..StackOptions::default()
        })
        .await,
    );
    let initial = skus(&stack, opts);
    for (sku, n) in &initial {
        stack.set_stock(sku, *n).await;
    }
    // Which groups read which topic (for the dead letters of poison).
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for svc in Service::ALL {
        let r = stack.get(svc, "/health/consumers").await.expect(200);
        let group = r.json["group"].as_str().unwrap_or_default().to_owned();
        for t in r.json["consumers"][0]["topics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(t) = t.as_str() {
                groups.entry(t.to_owned()).or_default().push(group.clone());
            }
        }
    }

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let traffic = tokio::spawn(load::run(
        stack.clone(),
        initial.keys().cloned().collect(),
        opts.rate,
        opts.duration,
        opts.seed.wrapping_add(1),
    ));
    let injected = faults::run(&stack, &mut rng, opts.duration, opts.saga_timeout).await?;
    let traffic = traffic.await.context("the traffic task")?;
    let load_done = started.elapsed();

    // Every part is back: wait for the consumers, then for the sagas.
    stack.wait_all_assigned(Duration::from_secs(120)).await;
    let settle_start = Instant::now();
    let settled = crate::wait::poll_until(opts.settle, || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders WHERE status NOT IN ('SHIPPED', 'DELIVERED', 'CANCELLED') \
             AND stalled_at IS NULL",
        )
        .fetch_one(&stack.db(Service::Order).await)
        .await
        .map_err(|e| e.to_string())?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM orders")
            .fetch_all(&stack.db(Service::Order).await)
            .await
            .map_err(|e| e.to_string())?;
        let missing = traffic
            .accepted
            .keys()
            .filter(|id| !ids.contains(id))
            .count();
        if open == 0 && missing == 0 {
            Ok(())
        } else {
            Err(format!(
                "{open} sagas open, {missing} accepted orders not stored"
            ))
        }
    })
    .await;
    let settle_time = settle_start.elapsed();
    let state = check::read_state(&stack).await?;
    let invariants = check::check(
        &state,
        &Expected {
            accepted: Accepted::Ids(traffic.accepted.keys().cloned().collect()),
            initial,
            poison: injected.poison.clone(),
            groups,
        },
    );

    let mut t = String::new();
    let _ = writeln!(
        t,
        "chaos campaign: seed {}, {:.0}s of load at {}/s, stack {} (logs {})",
        opts.seed,
        opts.duration.as_secs_f64(),
        opts.rate,
        stack.id,
        stack.log_dir().display()
    );
    let _ = writeln!(
        t,
        "load and faults {:.1}s, settled in {:.1}s{}",
        load_done.as_secs_f64(),
        settle_time.as_secs_f64(),
        match &settled {
            Ok(()) => String::new(),
            Err(e) => format!(" (NOT settled: {e})"),
        }
    );
    let _ = writeln!(t, "\nfaults injected");
    for kind in Kind::ALL {
        let n = injected.by_kind.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(t, "  {:<32} {n:>5}", kind.to_string());
    }
    let _ = writeln!(
        t,
        "  ({} records re-delivered by moved consumer groups, {} poison records)",
        injected.rewound,
        injected.poison.len()
    );
    let _ = writeln!(t, "\norders");
    let _ = writeln!(t, "  {:<32} {:>5}", "accepted", traffic.accepted.len());
    let _ = writeln!(
        t,
        "  {:<32} {:>5}",
        "never answered (client gave up)", traffic.unanswered
    );
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for id in traffic.accepted.keys() {
        let label = match state.orders.get(id) {
            None => "missing".to_owned(),
            Some(o) => {
                let mut l = o.status.clone();
                if let Some(c) = o.reason.as_ref().filter(|_| o.status == "CANCELLED") {
                    l = format!("{l} {c}");
                }
                if o.stalled {
                    l.push_str(" (stalled)");
                }
                l
            }
        };
        *outcomes.entry(label).or_default() += 1;
    }
    for (label, n) in &outcomes {
        let _ = writeln!(t, "  {label:<32} {n:>5}");
    }
    let answers = |m: &BTreeMap<u16, usize>| {
        m.iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        t,
        "  cancels answered {}; dispatches answered {}; deliveries {}",
        answers(&traffic.cancels),
        answers(&traffic.dispatches),
        traffic.deliveries
    );
    let mails = state.mails();
    let repeats: usize = mails
        .values()
        .map(|ids| ids.len() - ids.iter().collect::<std::collections::BTreeSet<_>>().len())
        .sum();
    let _ = writeln!(
        t,
        "  e-mails received {}, of which repeats of one Message-ID {repeats} (SMTP is at-least-once)",
        mails.values().map(Vec::len).sum::<usize>()
    );
    let _ = writeln!(t, "\ninvariants");
    for i in &invariants {
        let _ = writeln!(t, "  {:<44} {:>5} violations", i.name, i.violations.len());
        for v in i.violations.iter().take(5) {
            let _ = writeln!(t, "      {v}");
        }
    }
    Ok(Report {
        table: t,
        invariants,
    })
}
