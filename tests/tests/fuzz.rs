//! Schemathesis (from the venv `scripts/test` installs) against every
//! service's OpenAPI document, on a real stack, in three passes:
//!
//! 1. without a token: no protected operation may answer 2xx;
//! 2. with an operator+service token, invalid requests only
//!    (`--mode negative`): every one must be rejected;
//! 3. with the token, valid requests (`--mode positive`).
//!
//! Every pass: no 5xx, every response as documented (status, content type,
//! body schema). Passes 1 and 2 must write nothing: the orders, stock,
//! payments, payment methods, shipments and e-mails are counted before
//! and after.
//! `ORDERFLOW_FUZZ_EXAMPLES` (default 10) sets the examples per operation
//! and `ORDERFLOW_FUZZ_SEED` the seed; `scripts/fuzz` runs it longer.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orderflow_e2e::{env, Service, Stack};
use serde_json::Value;

/// Operations anyone may call.
const OPEN: [&str; 3] = ["/health/", "/metrics", "/openapi.json"];

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: usize,
    by_class: [usize; 6],
    open_2xx_without_token: usize,
    /// `POST /payment-methods` answered 201: a card registered. Schemathesis
    /// counts some of its negative cases as valid after all (they pass
    /// `negative_data_rejection`); each of these writes one row.
    cards_registered: i64,
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One schemathesis run; returns its exit status and what the HAR holds.
async fn schemathesis(
    stack: &Stack,
    svc: Service,
    token: Option<&str>,
    mode: &str,
    checks: &str,
    har: &PathBuf,
) -> (bool, Counts, String) {
    let st = env::python()
        .parent()
        .expect("the venv's bin directory")
        .join("st");
    let base = stack.url(svc);
    let mut cmd = tokio::process::Command::new(&st);
    // Its caches (`.schemathesis/`) go with the stack's logs, not into the
    // working tree.
    cmd.current_dir(har.parent().expect("the fuzz directory"));
    cmd.args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args(["--mode", mode, "--checks", checks])
        .args(["-n", &setting("ORDERFLOW_FUZZ_EXAMPLES", 10).to_string()])
        .args(["--seed", &setting("ORDERFLOW_FUZZ_SEED", 1).to_string()])
        // The examples of the documents are valid requests: not in the
        // negative pass.
        .args([
            "--phases",
            if mode == "negative" {
                "coverage,fuzzing"
            } else {
                "examples,coverage,fuzzing"
            },
        ])
        // One worker: hypothesis describes its strategies with `ast.parse`,
        // which CPython 3.11 does not allow from two threads at once.
        .args(["--workers", "1", "--no-color", "--request-timeout", "20"])
        .args([
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
        ])
        .args(["--report", "har", "--report-har-path"])
        .arg(har);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e} (scripts/test installs it)", st.display()));
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.len() > 6000 {
        let cut = text.floor_char_boundary(text.len() - 6000);
        text = format!("…{}", &text[cut..]);
    }
    let har: Value =
        serde_json::from_slice(&std::fs::read(har).unwrap_or_default()).unwrap_or(Value::Null);
    let mut c = Counts::default();
    for e in har["log"]["entries"].as_array().into_iter().flatten() {
        let status = e["response"]["status"].as_u64().unwrap_or(0) as usize;
        c.requests += 1;
        c.by_class[(status / 100).min(5)] += 1;
        let url = e["request"]["url"].as_str().unwrap_or_default();
        let open = OPEN.iter().any(|p| url.contains(p));
        if token.is_none() && !open && (200..300).contains(&status) {
            c.open_2xx_without_token += 1;
        }
        if status == 201
            && e["request"]["method"] == "POST"
            && url
                .split('?')
                .next()
                .unwrap_or_default()
                .ends_with("/payment-methods")
        {
            c.cards_registered += 1;
        }
    }
    (out.status.success(), c, text)
}

/// What requests could have written.
async fn state(stack: &Stack) -> BTreeMap<&'static str, i64> {
    let mut s = BTreeMap::new();
    for (svc, name, sql) in [
        (Service::Order, "orders", "SELECT count(*) FROM orders"),
        (
            Service::Inventory,
            "stock units",
            "SELECT coalesce(sum(available + reserved + shipped), 0)::bigint + count(*) FROM stock",
        ),
        (
            Service::Payment,
            "payments",
            "SELECT count(*) FROM payments",
        ),
        (
            Service::Payment,
            "payment methods",
            "SELECT count(*) FROM payment_methods",
        ),
        (
            Service::Shipping,
            "shipments",
            "SELECT count(*) FROM shipments",
        ),
        (
            Service::Notification,
            "notifications",
            "SELECT count(*) FROM notifications",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&stack.db(svc).await)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        s.insert(name, n);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_generated_request_is_answered_as_documented_and_rejections_write_nothing() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("FUZZ");
    stack.set_stock(&sku, 100).await;
    let token = env::harness_token().expect("token");
    let dir = stack.log_dir().join("fuzz");
    std::fs::create_dir_all(&dir).expect("fuzz dir");
    let mut before = state(&stack).await;

    let strict = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_schema_conformance";
    let negative = format!("{strict},negative_data_rejection");
    let passes: [(&str, Option<&str>, &str, &str); 3] = [
        ("no token", None, "all", strict),
        ("invalid", Some(&token), "negative", negative.as_str()),
        ("valid", Some(&token), "positive", strict),
    ];
    let mut table =
        String::from("pass      service        requests    2xx    3xx    4xx    5xx  result\n");
    let mut failures = Vec::new();
    for (pass, tok, mode, checks) in passes {
        for svc in Service::ALL {
            let har = dir.join(format!("{svc}-{}.har", pass.replace(' ', "-")));
            let (ok, c, text) = schemathesis(&stack, svc, tok, mode, checks, &har).await;
            // Accepted requests write: only rejected ones must not.
            *before.entry("payment methods").or_default() += c.cards_registered;
            table.push_str(&format!(
                "{pass:<9} {svc:<14} {:>8} {:>6} {:>6} {:>6} {:>6}  {}\n",
                c.requests,
                c.by_class[2],
                c.by_class[3],
                c.by_class[4],
                c.by_class[5],
                if ok { "ok" } else { "FAILED" }
            ));
            if !ok || c.by_class[5] > 0 || c.open_2xx_without_token > 0 || c.requests == 0 {
                failures.push(format!(
                    "{pass} / {svc}: exit ok {ok}, {} 5xx, {} protected 2xx without a token, \
                     {} requests; schemathesis said:\n{text}",
                    c.by_class[5], c.open_2xx_without_token, c.requests
                ));
            }
        }
        if pass != "valid" {
            let now = state(&stack).await;
            if now != before {
                failures.push(format!(
                    "a rejected request of the {pass} pass wrote: expected {before:?} \
                     (the start plus what accepted requests wrote), found {now:?}"
                ));
            }
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{table}\n{}", failures.join("\n\n"));
}
