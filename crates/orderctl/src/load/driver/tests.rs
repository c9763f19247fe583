//! Bodies, outcome checks, the summary's shape and the loader's own usage.

use super::*;

fn tpl() -> BodyTemplate {
    BodyTemplate {
        customer_id: "load-x".into(),
        sku_prefix: "LOAD-x-".into(),
        skus: 3,
        max_lines: 5,
        max_quantity: 3,
        decline_share: 0.5,
        seed: 7,
        visa_method: "pm_visa".into(),
        declined_method: "pm_declined".into(),
    }
}

#[test]
fn bodies_are_deterministic_valid_and_use_distinct_skus() {
    let t = tpl();
    for seq in 0..200 {
        let (body, declined, total) = t.build(seq);
        assert_eq!(t.build(seq).0, body);
        let items = body["items"].as_array().expect("items");
        assert!(!items.is_empty() && items.len() <= 3);
        let mut skus: Vec<&str> = items.iter().filter_map(|i| i["sku"].as_str()).collect();
        skus.sort_unstable();
        skus.dedup();
        assert_eq!(skus.len(), items.len(), "distinct SKUs");
        assert!(skus
            .iter()
            .all(|s| ["LOAD-x-1", "LOAD-x-2", "LOAD-x-3"].contains(s)));
        let sum: i64 = items
            .iter()
            .map(|i| i["quantity"].as_i64().unwrap_or(0) * i["unitPrice"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(sum, total);
        assert_eq!(
            body["paymentMethodId"],
            if declined { "pm_declined" } else { "pm_visa" }
        );
        assert_eq!(body["customerId"], "load-x");
    }
}

/// An order as the API shows it, read with the API's own type.
fn view(status: &str, code: Option<&str>) -> OrderJson {
    serde_json::from_value(json!({
        "orderId": "0190f3b2-1c4d-7a8e-9f00-0123456789ab",
        "status": status,
        "reasonCode": code,
        "customerId": "load-x",
        "email": "load-x@example.com",
        "items": [{"sku": "SKU-1", "quantity": 1, "unitPrice": 100}],
        "total": 100,
        "currency": "EUR",
        "shippingAddress": {
            "name": "A", "line1": "1 Main St", "city": "Berlin",
            "postalCode": "10115", "country": "DE"
        },
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z"
    }))
    .expect("an order as the API shows it")
}

#[test]
fn outcomes_are_checked_against_the_token() {
    let rec = |declined| Record {
        seq: 0,
        declined,
        total: 1000,
        sent_unix_us: 0,
        latency_ms: 1.0,
        from_schedule_ms: None,
        result: Ok("o".into()),
    };
    assert!(expected_outcome(&rec(false), &view("SHIPPED", None)));
    assert!(!expected_outcome(&rec(true), &view("SHIPPED", None)));
    assert!(expected_outcome(
        &rec(true),
        &view("CANCELLED", Some("PAYMENT_DECLINED"))
    ));
    assert!(!expected_outcome(
        &rec(false),
        &view("CANCELLED", Some("PAYMENT_DECLINED"))
    ));
    assert!(!expected_outcome(
        &rec(true),
        &view("CANCELLED", Some("OUT_OF_STOCK"))
    ));
    assert!(!expected_outcome(&rec(false), &view("PAID", None)));
    assert_eq!(
        parse_ts_us("2026-01-01T00:00:00.123Z"),
        Some(1_767_225_600_123_000)
    );
    assert_eq!(parse_ts_us("yesterday"), None);
}

#[test]
fn summary_json_has_the_documented_shape() {
    let mut lat: Vec<f64> = (1..=100).map(f64::from).collect();
    let p = percentiles(&mut lat);
    let mut errors = Errors::default();
    errors.add("timeout");
    let s = Summary {
        schema: "orderflow-load-summary/1",
        started_at: "2026-01-01T00:00:00.000Z".into(),
        config: RunConfig {
            mode: "rate",
            rate: Some(500),
            concurrency: None,
            duration_s: 60.0,
            skus: 50,
            stock_per_sku: 1_000_000,
            sku_prefix: "LOAD-x-".into(),
            customer_id: "load-x".into(),
            decline_share: 0.05,
            max_lines: 2,
            max_quantity: 3,
            order_url: "http://127.0.0.1:8080".into(),
            inventory_url: "http://127.0.0.1:8082".into(),
        },
        sent: 30_000,
        accepted: 29_999,
        send_duration_s: 60.0,
        accepted_per_sec: 500.0,
        completed: 29_999,
        orders_per_sec: 495.1,
        drain_s: 0.6,
        settled: true,
        outcomes: BTreeMap::from([("SHIPPED".to_owned(), 29_999)]),
        post_latency_ms: p,
        post_latency_from_schedule_ms: None,
        saga_latency_ms: p,
        saga_latency_definition: SAGA_LATENCY_DEFINITION,
        saga_latency_by_send_time_ms: vec![crate::load::stats::WindowPercentiles {
            from_s: 0.0,
            to_s: 10.0,
            latency: p.expect("percentiles"),
        }],
        cancel_latency_ms: None,
        hop_latency_ms: BTreeMap::from([("post->OrderCreated".to_owned(), p.expect("p"))]),
        hop_order: hop_names(),
        timeline_sample: 1,
        shipped_event_minus_updated_at_ms: None,
        errors,
        loader: LoaderUsage::default(),
        plot: Some("target/bench/summary-latency.svg".into()),
    };
    let v = serde_json::to_value(&s).expect("json");
    assert_eq!(v["orders_per_sec"], 495.1);
    for k in ["p50", "p95", "p99", "max", "count"] {
        assert!(v["saga_latency_ms"][k].is_number(), "saga_latency_ms.{k}");
    }
    assert_eq!(v["saga_latency_ms"]["p99"], 99.0);
    assert_eq!(v["errors"]["total"], 1);
    assert_eq!(v["errors"]["by_kind"]["timeout"], 1);
    assert!(v["cancel_latency_ms"].is_null());
    assert_eq!(v["config"]["rate"], 500);
    assert_eq!(v["hop_latency_ms"]["post->OrderCreated"]["p50"], 50.0);
    assert_eq!(v["saga_latency_by_send_time_ms"][0]["to_s"], 10.0);
    assert_eq!(v["saga_latency_by_send_time_ms"][0]["p99"], 99.0);
    assert!(v["saga_latency_definition"]
        .as_str()
        .is_some_and(|d| d.contains("updatedAt")));
    let text = render_text(&s);
    assert!(text.contains("495.1 orders/s completed"), "{text}");
    assert!(text.contains("errors: 1 (timeout=1)"), "{text}");
    assert!(text.contains("  sent 0-10 s"), "{text}");
}

#[test]
fn loader_usage_reads_proc() {
    let u = loader_usage();
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(u.cpu_s.is_some());
        assert!(u.peak_rss_mib.is_some_and(|m| m > 0.0));
    }
}
