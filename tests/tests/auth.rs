//! Who may do what over HTTP: every API call needs a bearer token of the
//! configured issuer (here the development key), roles decide what it may
//! do, and a customer sees only their own orders. Health, metrics and the
//! OpenAPI documents stay open.

use orderflow_e2e::client::send;
use orderflow_e2e::{env, OrderBody, Resp, Service, Stack, Status};
use orderflow_service::auth::{self, Claims, Role};
use reqwest::Method;
use serde_json::json;

fn key() -> Vec<u8> {
    std::fs::read(env::dev_key("jwt-dev.key.pem")).expect("the development key")
}

fn token(sub: &str, roles: &[Role]) -> String {
    env::token_for(sub, roles).expect("mint")
}

/// A request without the harness's token: `bearer` or none.
async fn call(
    stack: &Stack,
    bearer: Option<&str>,
    method: Method,
    svc: Service,
    path: &str,
    body: Option<serde_json::Value>,
) -> Resp {
    let mut r = reqwest::Client::new().request(method, format!("{}{path}", stack.url(svc)));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    send(r).await
}

fn expect_401(r: &Resp, invalid: bool) {
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(r.code(), "unauthorized", "{}", r.describe());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer "), "{}", r.describe());
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        invalid,
        "{}",
        r.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_are_authenticated_and_see_only_what_their_roles_allow() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("AUTH");
    stack.set_stock(&sku, 10).await;
    let some_order = uuid::Uuid::new_v4();
    let protected = [
        (Method::POST, Service::Order, "/orders".to_owned()),
        (Method::GET, Service::Order, "/orders".to_owned()),
        (Method::GET, Service::Order, format!("/orders/{some_order}")),
        (Method::GET, Service::Order, format!("/catalog/{sku}")),
        (Method::GET, Service::Inventory, format!("/inventory/{sku}")),
        (Method::PUT, Service::Inventory, format!("/inventory/{sku}")),
        (
            Method::GET,
            Service::Payment,
            format!("/payments/{some_order}"),
        ),
        (
            Method::POST,
            Service::Shipping,
            format!("/shipments/{some_order}/dispatch"),
        ),
        (
            Method::GET,
            Service::Notification,
            "/notifications".to_owned(),
        ),
    ];

    // No token, a token of another key, an expired one, garbage: 401.
    let other_key = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKF0aRCOCtNeMnnXpZ2pyWBVPuJxKl4345DnUCpnW0zp\n-----END PRIVATE KEY-----\n";
    let forged = auth::mint(
        &auth::claims("ops", &[Role::Operator], "orderflow", "orderflow", 600),
        other_key,
    )
    .expect("mint");
    let mut expired: Claims = auth::claims("ops", &[Role::Operator], "orderflow", "orderflow", 0);
    expired.exp = expired.iat - 3600;
    let expired = auth::mint(&expired, &key()).expect("mint");
    let wrong_audience = auth::mint(
        &auth::claims("ops", &[Role::Operator], "orderflow", "elsewhere", 600),
        &key(),
    )
    .expect("mint");
    for (method, svc, path) in &protected {
        let body = (*method != Method::GET).then(|| json!({}));
        expect_401(
            &call(&stack, None, method.clone(), *svc, path, body.clone()).await,
            false,
        );
        for bad in [
            &forged,
            &expired,
            &wrong_audience,
            &"not-a-token".to_owned(),
        ] {
            expect_401(
                &call(&stack, Some(bad), method.clone(), *svc, path, body.clone()).await,
                true,
            );
        }
    }
    // Health, metrics and the API documents need none.
    for svc in Service::ALL {
        for path in ["/health/ready", "/metrics", "/openapi.json"] {
            let r = call(&stack, None, Method::GET, svc, path, None).await;
            assert_eq!(r.status, 200, "{}", r.describe());
        }
    }

    // A customer on an operator's endpoint: 403.
    let ann = token("c-ann", &[Role::Customer]);
    let bob = token("c-bob", &[Role::Customer]);
    let ops = token("ops", &[Role::Operator]);
    for (method, svc, path, body) in [
        (
            Method::PUT,
            Service::Inventory,
            format!("/inventory/{sku}"),
            Some(json!({"available": 1})),
        ),
        (Method::GET, Service::Order, "/orders".to_owned(), None),
        (
            Method::GET,
            Service::Payment,
            format!("/payments/{some_order}"),
            None,
        ),
        (
            Method::POST,
            Service::Shipping,
            format!("/shipments/{some_order}/dispatch"),
            None,
        ),
        (
            Method::GET,
            Service::Notification,
            "/notifications".to_owned(),
            None,
        ),
    ] {
        let r = call(&stack, Some(&ann), method, svc, &path, body).await;
        assert_eq!(r.status, 403, "{}", r.describe());
        assert_eq!(r.code(), "forbidden", "{}", r.describe());
    }
    // Nothing was written by the refused stock change.
    assert_eq!(stack.inventory(&sku).await["available"], 10);

    // Ann registers her card with the payment service: the method is hers
    // (the token's subject); she cannot register one for Bob, and Bob
    // cannot see hers.
    let r = call(
        &stack,
        Some(&ann),
        Method::POST,
        Service::Payment,
        "/payment-methods",
        Some(json!({"token": "tok_visa", "customerId": "c-bob"})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.describe());
    let r = call(
        &stack,
        None,
        Method::POST,
        Service::Payment,
        "/payment-methods",
        Some(json!({"token": "tok_visa"})),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.describe());
    let r = call(
        &stack,
        Some(&ann),
        Method::POST,
        Service::Payment,
        "/payment-methods",
        Some(json!({"token": "tok_visa"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.describe());
    assert_eq!(r.json["customerId"], "c-ann", "{}", r.describe());
    let card = r.json["paymentMethodId"].as_str().expect("id").to_owned();
    let card_path = format!("/payment-methods/{card}");
    let r = call(
        &stack,
        Some(&bob),
        Method::GET,
        Service::Payment,
        &card_path,
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.describe());
    let r = call(
        &stack,
        Some(&ann),
        Method::GET,
        Service::Payment,
        &card_path,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.json.get("token").is_none(),
        "the token is never shown: {}",
        r.json
    );

    // Ann orders: the customer id is the token's subject; she cannot order
    // for Bob.
    let mut body = OrderBody::new(&sku, 1).customer("c-ann").json_with(&card);
    body.as_object_mut().expect("object").remove("customerId");
    let r = call(
        &stack,
        Some(&ann),
        Method::POST,
        Service::Order,
        "/orders",
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.describe());
    let id = r.json["orderId"].as_str().expect("orderId").to_owned();
    body["customerId"] = json!("c-bob");
    let r = call(
        &stack,
        Some(&ann),
        Method::POST,
        Service::Order,
        "/orders",
        Some(body),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.describe());
    let path = format!("/orders/{id}");
    let r = call(&stack, Some(&ann), Method::GET, Service::Order, &path, None).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json["customerId"], "c-ann", "{}", r.describe());

    // Bob can neither see, follow nor cancel it: to him it does not exist.
    for (method, p) in [
        (Method::GET, path.clone()),
        (Method::GET, format!("{path}/timeline")),
        (Method::POST, format!("{path}/cancel")),
    ] {
        let r = call(&stack, Some(&bob), method, Service::Order, &p, None).await;
        assert_eq!(r.status, 404, "{}", r.describe());
        assert_eq!(r.code(), "not_found", "{}", r.describe());
    }
    assert_ne!(stack.order(&id).await.status, Status::Cancelling);

    // The operator sees it and lists orders; Ann may cancel her own.
    let r = call(&stack, Some(&ops), Method::GET, Service::Order, &path, None).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = call(
        &stack,
        Some(&ops),
        Method::GET,
        Service::Order,
        "/orders?customerId=c-ann",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json["orders"][0]["orderId"],
        id.as_str(),
        "{}",
        r.describe()
    );
    let r = call(
        &stack,
        Some(&ann),
        Method::POST,
        Service::Order,
        &format!("{path}/cancel"),
        None,
    )
    .await;
    assert!(matches!(r.status, 202 | 409), "{}", r.describe());
}
