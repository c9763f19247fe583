//! The event-flow page (`orderctl console`) in a real browser: Debian's
//! chromium, headless, driven through chromedriver. The page loads with no
//! error, shows the five services and their topics with numbers scraped
//! from the services, and once an order is posted and typed into the page,
//! its swimlane shows every event of the order's journal, each after the
//! event that caused it and in the lane of the service that emitted it.
//! A screenshot is left in the stack's log directory (`flow-page.png`).
//! Without an operator's token it shows nothing of the system. And its one
//! button: a dead letter sent back, refused without a token and for a
//! customer, done for an operator, applied once and audited.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use fantoccini::{Client, ClientBuilder, Locator};
use orderflow_e2e::stack::Helper;
use orderflow_e2e::{OrderBody, Service, Stack, StackOptions, Status};
use orderflow_service::auth::Role;
use serde_json::{json, Value};

fn binary(var: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium and chromium-driver (scripts/test does) or set {var}",
        path.display()
    );
    path
}

/// chromedriver on a port of its own, and a headless chromium session.
async fn browser(stack: &Stack) -> (Helper, Client) {
    let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
    let chromedriver = binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
    let port = Stack::free_port();
    let driver = stack
        .spawn_helper(
            "chromedriver",
            &chromedriver,
            &[format!("--port={port}")],
            &[],
            port,
        )
        .await
        .expect("starting chromedriver");
    let profile = stack.log_dir().join("chromium-profile");
    // The flags keep chromium off the network (this machine has none
    // outside) and out of the sandbox (tests run as root).
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1400",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| panic!("a chromium session: {e}\n{}", driver.log_tail()));
    (driver, client)
}

/// The stack's console, chromedriver, and a browser showing the page
/// (with no token typed in yet).
async fn open_page(stack: &Stack) -> (Helper, Helper, Client) {
    let console = stack
        .spawn_console()
        .await
        .expect("starting orderctl console");
    let (driver, client) = browser(stack).await;
    client
        .goto(&format!("{}/", console.url()))
        .await
        .expect("opening the page");
    (console, driver, client)
}

/// Types `token` into the page's token field (replacing what is there).
async fn type_token(client: &Client, token: &str) {
    let field = client
        .find(Locator::Id("operator-token"))
        .await
        .expect("the token field");
    field.clear().await.expect("clearing the token field");
    if !token.is_empty() {
        field.send_keys(token).await.expect("typing the token");
    }
}

/// An operator's token for the page.
fn operator_token(sub: &str) -> String {
    orderflow_e2e::env::token_for(sub, &[Role::Operator]).expect("a token")
}

/// Runs `script` in the page and returns its value.
async fn page_value(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("running {script:?} in the page: {e}"))
}

/// The errors the page collected (errors.js).
async fn page_errors(client: &Client) -> Vec<String> {
    serde_json::from_value(
        page_value(
            client,
            "return window.pageErrors || ['errors.js did not load'];",
        )
        .await,
    )
    .expect("a list of strings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_flow_page_shows_the_services_and_an_orders_saga() {
    let stack = Stack::start_default().await;
    let (_console, _driver, client) = open_page(&stack).await;

    // Without a token the page shows nothing of the system: it asks for
    // one (its API answers 401).
    let said = stack
        .wait_for("the page to ask for a token", || async {
            let v = page_value(
                &client,
                "return document.getElementById('scraped').textContent;",
            )
            .await;
            let text = v.as_str().unwrap_or_default().to_owned();
            if text.contains("operator's token") {
                Ok(text)
            } else {
                Err(format!("header says {text:?}"))
            }
        })
        .await;
    assert!(said.starts_with("topology:"), "{said}");
    let shown = page_value(
        &client,
        "return document.querySelectorAll('#topology [data-service], #dead-letters tbody tr').length;",
    )
    .await;
    assert_eq!(shown, 0, "nothing shown without a token");
    type_token(&client, &operator_token("ops-flow")).await;

    // The topology: five services, each answering its scrape, and the
    // saga's topics with the audit trail's.
    let services = stack
        .wait_for("the topology to show five services that answer", || async {
            let v = page_value(
                &client,
                "return [...document.querySelectorAll('#topology [data-service]')]\
                   .map(g => [g.dataset.service, !g.classList.contains('down')]);",
            )
            .await;
            let list: Vec<(String, bool)> = serde_json::from_value(v).map_err(|e| e.to_string())?;
            if list.len() == 5 && list.iter().all(|(_, up)| *up) {
                Ok(list.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
            } else {
                Err(format!("services on the page: {list:?}"))
            }
        })
        .await;
    let want: Vec<String> = Service::ALL.iter().map(|s| s.binary()).collect();
    assert_eq!(services, want);
    let topics: Vec<String> = serde_json::from_value(
        page_value(
            &client,
            "return [...document.querySelectorAll('#topology [data-topic]')].map(g => g.dataset.topic);",
        )
        .await,
    )
    .expect("topic names");
    assert_eq!(
        topics.len(),
        6,
        "five saga topics and the audit trail's: {topics:?}"
    );
    assert!(
        topics.iter().all(|t| t.starts_with(&stack.prefix)),
        "the stack's own topics: {topics:?}"
    );

    // An order, finished, with every event in its journal.
    let sku = stack.sku("FLOW");
    stack.set_stock(&sku, 5).await;
    let order = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&order, "SHIPPED").await;
    let journal: Vec<Value> = stack
        .wait_for("the order's journal to hold its timeline", || async {
            let timeline: BTreeSet<String> = stack
                .timeline(&order)
                .await
                .iter()
                .map(|e| e.event_id.to_string())
                .collect();
            let r = stack
                .get(Service::Order, &format!("/orders/{order}/journal"))
                .await;
            let events = r.json["events"].as_array().cloned().unwrap_or_default();
            let have: BTreeSet<String> = events
                .iter()
                .map(|e| e["eventId"].as_str().unwrap_or_default().to_owned())
                .collect();
            if timeline.is_subset(&have) {
                Ok(events)
            } else {
                Err(format!("timeline {timeline:?}, journal {have:?}"))
            }
        })
        .await;

    // Typed into the page, as a user would.
    client
        .find(Locator::Id("order-id"))
        .await
        .expect("the order id field")
        .send_keys(&order)
        .await
        .expect("typing the order id");
    client
        .find(Locator::Id("show-saga"))
        .await
        .expect("the Show button")
        .click()
        .await
        .expect("clicking Show");
    let rows: Vec<HashMap<String, String>> = stack
        .wait_for("the swimlane to show the order's events", || async {
            let v = page_value(
                &client,
                "return [...document.querySelectorAll('#swimlane tr.saga-step')].map(r => ({\
                   eventType: r.dataset.eventType, eventId: r.dataset.eventId,\
                   causedBy: r.dataset.causedBy, lane: r.dataset.lane,\
                   cell: (r.querySelector('td.step') || {}).textContent || ''}));",
            )
            .await;
            let rows: Vec<HashMap<String, String>> =
                serde_json::from_value(v).map_err(|e| e.to_string())?;
            if rows.len() == journal.len() {
                Ok(rows)
            } else {
                Err(format!(
                    "{} rows for {} events: {rows:?}",
                    rows.len(),
                    journal.len()
                ))
            }
        })
        .await;

    // The same events as the journal, each in its emitter's lane, each
    // after its cause, the order's creation first.
    let by_id: HashMap<&str, &Value> = journal
        .iter()
        .map(|e| (e["eventId"].as_str().expect("an id"), e))
        .collect();
    assert_eq!(rows[0]["eventType"], "OrderCreated", "{rows:#?}");
    let mut shown = BTreeSet::new();
    for row in &rows {
        let event = by_id
            .get(row["eventId"].as_str())
            .unwrap_or_else(|| panic!("{row:?} is not in the journal {journal:#?}"));
        assert_eq!(row["eventType"], event["eventType"].as_str().unwrap());
        assert_eq!(row["lane"], event["source"].as_str().unwrap(), "{row:?}");
        assert!(row["cell"].contains(&row["eventType"]), "{row:?}");
        let cause = event["causationId"].as_str().unwrap_or_default();
        if by_id.contains_key(cause) {
            assert_eq!(row["causedBy"], cause, "{row:?}");
            assert!(
                shown.contains(cause),
                "{} shown before its cause {cause}: {rows:#?}",
                row["eventType"]
            );
            assert!(
                row["cell"].contains("ms after"),
                "the hop's latency: {row:?}"
            );
        }
        shown.insert(row["eventId"].clone());
    }
    let types: BTreeSet<&str> = rows.iter().map(|r| r["eventType"].as_str()).collect();
    for t in [
        "OrderCreated",
        "InventoryReserved",
        "PaymentProcessed",
        "ShippingCreated",
        "OrderShipped",
    ] {
        assert!(types.contains(t), "{t} in the swimlane: {types:?}");
    }

    // Numbers on the edges once two scrapes have seen the order's events.
    stack
        .wait_for("numbers on every edge (two scrapes)", || async {
            let v = page_value(
                &client,
                "return [...document.querySelectorAll('#edges tbody tr')].map(r => r.textContent);",
            )
            .await;
            let rows: Vec<String> = serde_json::from_value(v).map_err(|e| e.to_string())?;
            if rows.len() >= 20 && !rows.iter().any(|r| r.contains('–') && r.contains(" → ")) {
                Ok(())
            } else {
                Err(format!("edge rows: {rows:?}"))
            }
        })
        .await;

    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(stack.log_dir().join("flow-page.png"), png).expect("writing the screenshot");
    assert_eq!(
        page_errors(&client).await,
        Vec::<String>::new(),
        "errors on the page"
    );
    client.close().await.expect("closing the browser");
}

/// Clicks the page's "Send back" button of `event_id` with `token` in the
/// token field, and returns the status line it leaves.
async fn send_back(stack: &Stack, client: &Client, event_id: &str, token: &str) -> String {
    type_token(client, token).await;
    page_value(
        client,
        "document.getElementById('dlq-action').textContent = ''; return null;",
    )
    .await;
    // The list is redrawn when it changes: a button found just before may
    // be gone by the click; find it again then.
    let button = format!("button.redrive[data-event-id='{event_id}']");
    stack
        .wait_for("a click on Send back", || async {
            let found = client
                .find(Locator::Css(&button))
                .await
                .map_err(|e| format!("finding {button}: {e}"))?;
            found
                .click()
                .await
                .map_err(|e| format!("clicking {button}: {e}"))
        })
        .await;
    stack
        .wait_for("the page to say what became of the redrive", || async {
            let v = page_value(
                client,
                "return document.getElementById('dlq-action').textContent;",
            )
            .await;
            let text = v.as_str().unwrap_or_default().to_owned();
            if text.starts_with("not sent back") || text.starts_with("sent ") {
                Ok(text)
            } else {
                Err(format!("status line {text:?}"))
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sends_a_dead_letter_back_from_the_page() {
    // Shipping sets PaymentProcessed aside: the order's goes to the dead
    // letters and the order waits, PAID.
    let stack = Stack::start(StackOptions {
        env: vec![(
            Service::Shipping,
            "CONSUMER_QUARANTINE".into(),
            "PaymentProcessed".into(),
        )],
        ..StackOptions::default()
    })
    .await;
    let sku = stack.sku("FLOWDLQ");
    stack.set_stock(&sku, 5).await;
    let order = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&order, "PAID").await;
    let paid = stack
        .wait_for("the order's PaymentProcessed in its timeline", || async {
            stack
                .timeline(&order)
                .await
                .iter()
                .find(|e| e.event_type == "PaymentProcessed")
                .map(|e| e.event_id.to_string())
                .ok_or_else(|| "no PaymentProcessed yet".to_owned())
        })
        .await;
    // The order is PAID once the order service has the event; shipping may
    // not have set it aside yet, and stopped before, it never would.
    let dlq = format!("{}payment-events.dlq", stack.prefix);
    stack.wait_for_dead_letters(&dlq, "quarantined", 1).await;

    // The fix: shipping without the quarantine.
    stack.terminate(Service::Shipping).await;
    stack
        .set_service_env(Service::Shipping, "CONSUMER_QUARANTINE", None)
        .await;
    stack.start_service(Service::Shipping).await;
    stack
        .wait_assigned(Service::Shipping, std::time::Duration::from_secs(60))
        .await;

    let (_console, _driver, client) = open_page(&stack).await;
    type_token(&client, &operator_token("ops-page")).await;
    stack
        .wait_for("the dead letter on the page", || async {
            let v = page_value(
                &client,
                &format!("return document.querySelectorAll(\"button.redrive[data-event-id='{paid}']\").length;"),
            )
            .await;
            if v == 1 {
                Ok(())
            } else {
                // The list is read every 15 s; read it now.
                page_value(&client, "refreshDeadLetters(); return null;").await;
                Err(format!("{v} buttons for {paid}"))
            }
        })
        .await;

    // No token, then a customer's: refused, and nothing moves.
    let said = send_back(&stack, &client, &paid, "").await;
    assert!(said.contains("HTTP 401"), "{said}");
    let customer = orderflow_e2e::env::token_for("c-flow", &[Role::Customer]).expect("a token");
    let said = send_back(&stack, &client, &paid, &customer).await;
    assert!(said.contains("HTTP 403"), "{said}");
    assert_eq!(stack.order(&order).await.status, Status::Paid);

    // An operator's: back on its topic, applied once, the order ships.
    let said = send_back(&stack, &client, &paid, &operator_token("ops-page")).await;
    assert!(said.starts_with(&format!("sent {paid} back to ")), "{said}");
    stack.wait_status(&order, "SHIPPED").await;
    let shipments = stack
        .count(
            Service::Shipping,
            "SELECT count(*) FROM shipments WHERE order_id = $1",
            &order,
        )
        .await;
    assert_eq!(shipments, 1);

    // On the order's audit trail, by the token's subject.
    let redrives = stack
        .wait_for("the redrive on the order's audit trail", || async {
            let (ok, text) = stack
                .orderctl(&["audit", "--order", &order, "--json"], &[])
                .await;
            if !ok {
                return Err(text);
            }
            let trail: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let found: Vec<Value> = trail
                .into_iter()
                .filter(|e| e["action"]["action"] == "dead_letters.redriven")
                .collect();
            if found.is_empty() {
                Err(text)
            } else {
                Ok(found)
            }
        })
        .await;
    assert_eq!(redrives.len(), 1, "{redrives:#?}");
    let (_, text) = stack
        .orderctl(&["audit", "--order", &order, "--json"], &[])
        .await;
    assert_eq!(
        text.matches("dead_letters.redrive_started").count(),
        1,
        "recorded before it was made: {text}"
    );
    assert_eq!(redrives[0]["action"]["actor"], "ops-page");
    assert_eq!(redrives[0]["action"]["eventIds"], json!([paid]));
    assert_eq!(
        page_errors(&client).await,
        Vec::<String>::new(),
        "errors on the page"
    );
    client.close().await.expect("closing the browser");
}
