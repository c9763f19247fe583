//! Schema evolution guard: every schema in `schemas/` must be registrable
//! on top of every released version in `schemas/history/<Event>/v<N>.avsc`
//! under BACKWARD_TRANSITIVE compatibility, in a real schema registry over
//! HTTP. A change that would break existing consumers fails this test, and
//! so does a change that was not recorded as a new history version.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

const CT: &str = "application/vnd.schemaregistry.v1+json";

fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:18081".into())
}

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn history(event: &str) -> Vec<PathBuf> {
    let dir = schemas_dir().join("history").join(event);
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} must exist: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .map(|p| {
            let n = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix('v'))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{} is not named v<N>.avsc", p.display()));
            (n, p)
        })
        .collect();
    versions.sort();
    let numbers: Vec<u32> = versions.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        (1..=versions.len() as u32).collect::<Vec<_>>(),
        "{event}: versions must be v1..vN"
    );
    versions.into_iter().map(|(_, p)| p).collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = client
        .post(url)
        .header("content-type", CT)
        .json(&body)
        .send()
        .await
        .expect("registry reachable");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

#[tokio::test]
async fn current_schemas_are_backward_compatible_with_every_released_version() {
    let client = reqwest::Client::new();
    let base = registry_url();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut events: Vec<String> = std::fs::read_dir(schemas_dir())
        .expect("schemas dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("avsc"))
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .to_owned()
        })
        .collect();
    events.sort();
    assert!(
        events.len() >= 15,
        "expected every saga event to have a schema, found {events:?}"
    );
    for event in &events {
        let subject = format!("evolution-{run}-{event}");
        let r = client
            .put(format!("{base}/config/{subject}"))
            .header("content-type", CT)
            .json(&json!({"compatibility": "BACKWARD_TRANSITIVE"}))
            .send()
            .await
            .expect("registry reachable");
        assert!(
            r.status().is_success(),
            "setting compatibility for {subject}: {}",
            r.status()
        );
        let versions = history(event);
        for v in &versions {
            let (status, body) = post(
                &client,
                &format!("{base}/subjects/{subject}/versions"),
                json!({"schema": read(v)}),
            )
            .await;
            assert_eq!(
                status,
                200,
                "released {} must stay registrable: {body}",
                v.display()
            );
        }
        let current = read(&schemas_dir().join(format!("{event}.avsc")));
        let (status, body) = post(
            &client,
            &format!("{base}/compatibility/subjects/{subject}/versions?verbose=true"),
            json!({"schema": current}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["is_compatible"], true,
            "schemas/{event}.avsc breaks consumers of released versions: {body}"
        );
        let latest: Value =
            serde_json::from_str(&read(versions.last().expect("at least v1"))).expect("json");
        let current: Value = serde_json::from_str(&current).expect("json");
        assert_eq!(
            current, latest,
            "schemas/{event}.avsc changed: record it as the next version in schemas/history/{event}/"
        );
    }
}

#[tokio::test]
async fn a_breaking_change_is_rejected_by_the_registry() {
    let client = reqwest::Client::new();
    let base = registry_url();
    let subject = format!("evolution-{}-OrderCreated", uuid::Uuid::new_v4().simple());
    let original = read(&schemas_dir().join("OrderCreated.avsc"));
    let (status, body) = post(
        &client,
        &format!("{base}/subjects/{subject}/versions"),
        json!({"schema": original}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A new required field without a default: new readers cannot read old data.
    let mut broken: Value = serde_json::from_str(&original).expect("json");
    data_fields(&mut broken).push(json!({"name": "giftWrap", "type": "boolean"}));
    let (status, body) = post(
        &client,
        &format!("{base}/subjects/{subject}/versions"),
        json!({"schema": broken.to_string()}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], 409);
    // The same change with a default is fine and becomes version 2.
    data_field_default(&mut broken);
    let (status, body) = post(
        &client,
        &format!("{base}/subjects/{subject}/versions"),
        json!({"schema": broken.to_string()}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = client
        .get(format!("{base}/subjects/{subject}/versions"))
        .send()
        .await
        .expect("registry reachable");
    assert_eq!(r.json::<Vec<i64>>().await.expect("versions"), vec![1, 2]);
}

/// The fields of the envelope's `data` record.
fn data_fields(schema: &mut Value) -> &mut Vec<Value> {
    schema["fields"]
        .as_array_mut()
        .expect("fields")
        .iter_mut()
        .find(|f| f["name"] == "data")
        .expect("data field")["type"]["fields"]
        .as_array_mut()
        .expect("data fields")
}

fn data_field_default(schema: &mut Value) {
    let last = data_fields(schema).last_mut().expect("the added field");
    last["default"] = json!(false);
}

/// The services' registry user (`ORDERFLOW_SERVICES_REGISTRY_URL`, set by
/// `scripts/test` as `scripts/up` sets it) may read schemas but not register
/// or loosen them; the admin user (`SCHEMA_REGISTRY_URL`) may. Skipped with
/// a message when the registry runs without users (an external one).
#[tokio::test]
async fn the_services_registry_user_reads_but_cannot_change_schemas() {
    use orderflow_events::registry::RegistryClient;
    let Ok(services_url) = std::env::var("ORDERFLOW_SERVICES_REGISTRY_URL") else {
        eprintln!("ORDERFLOW_SERVICES_REGISTRY_URL is not set: the registry has no users to check");
        return;
    };
    let services = RegistryClient::new(&services_url).expect("services' registry URL");
    let admin = RegistryClient::new(&registry_url()).expect("admin registry URL");
    assert!(services.user().is_some() && admin.user().is_some());
    let subject = format!("auth-check-{}-value", uuid::Uuid::new_v4().simple());
    let schema =
        json!({"type": "record", "name": "AuthCheck", "fields": [{"name": "a", "type": "int"}]})
            .to_string();

    let refused = services
        .register(&subject, &schema)
        .await
        .expect_err("read-only user");
    assert_eq!(refused.error_code(), Some(40301), "{refused}");
    assert!(
        !refused.to_string().contains(&services_url),
        "no credentials in errors"
    );
    let refused = services
        .set_compatibility(&subject, "NONE")
        .await
        .expect_err("read-only user");
    assert_eq!(refused.error_code(), Some(40301), "{refused}");
    assert!(
        services
            .lookup(&subject, &schema)
            .await
            .expect("lookup")
            .is_none(),
        "the refused register left nothing behind"
    );

    let id = admin
        .register(&subject, &schema)
        .await
        .expect("admin registers");
    let found = services.lookup(&subject, &schema).await.expect("lookup");
    assert_eq!(found.map(|v| v.id), Some(id), "the services' user reads it");
    assert!(services.schema_by_id(id).await.expect("by id").is_some());

    // Without credentials: refused.
    let anonymous = RegistryClient::new(services.base_url()).expect("URL without credentials");
    assert_eq!(anonymous.user(), None);
    let refused = anonymous
        .schema_by_id(id)
        .await
        .expect_err("no credentials");
    assert_eq!(refused.error_code(), Some(40101), "{refused}");
}
