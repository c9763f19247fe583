//! Where the infrastructure and the binaries are, from the environment.

use std::path::{Path, PathBuf};

/// PostgreSQL's admin URL (`ORDERFLOW_TEST_DATABASE_URL`, else the
/// scripts' `ORDERFLOW_PG_URL`), else the local server over loopback
/// without TLS, as the scripts default to. The services' database URLs keep
/// its query.
pub fn admin_database_url() -> String {
    ["ORDERFLOW_TEST_DATABASE_URL", "ORDERFLOW_PG_URL"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into())
}

/// Kafka bootstrap servers (`KAFKA_BOOTSTRAP_SERVERS`).
pub fn kafka_bootstrap_servers() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1:19092".into())
}

/// Schema registry URL (`SCHEMA_REGISTRY_URL`).
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:18081".into())
}

/// The shared registry's URL for the services, as its read-only user
/// (`ORDERFLOW_SERVICES_REGISTRY_URL`, which `scripts/test` exports).
pub fn services_registry_url() -> Option<String> {
    std::env::var("ORDERFLOW_SERVICES_REGISTRY_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The broker binary for stacks with a broker of their own (`BROKER_BIN`,
/// which `scripts/test` exports, else the link to the scripts' current
/// nisshi build).
pub fn broker_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BROKER_BIN").filter(|s| !s.is_empty()) {
        return PathBuf::from(bin);
    }
    let cache = std::env::var_os("ORDERFLOW_CACHE_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/orderflow")
        });
    cache.join("broker/nisshi")
}

/// A file of the development key pair (`deploy/dev-keys/`).
pub fn dev_key(name: &str) -> PathBuf {
    workspace_root().join("deploy/dev-keys").join(name)
}

/// The workspace root (where this crate was built from:
/// `crates/stack/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/stack has a grandparent")
        .to_path_buf()
}

/// `target/<profile>` of the running executable (a test's
/// `target/<profile>/deps/<test>-<hash>` → `target/<profile>`; a binary's
/// `target/<profile>/orderctl` → `target/<profile>`).
fn exe_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().and_then(|n| n.to_str()) == Some("deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// Directory holding the service binaries and `orderctl`
/// (`ORDERFLOW_BIN_DIR`, else the running executable's `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORDERFLOW_BIN_DIR").filter(|s| !s.is_empty()) {
        return PathBuf::from(dir);
    }
    exe_profile_dir().unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else derived from the
/// running executable, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|s| !s.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    exe_profile_dir()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The python interpreter with aiosmtpd and confluent_kafka
/// (`ORDERFLOW_PYTHON`); panics with instructions when it is missing.
pub fn python() -> PathBuf {
    let hint = "ORDERFLOW_PYTHON must name a python with aiosmtpd and confluent-kafka installed. \
                Run the suite through scripts/test, or run \
                `. scripts/lib.sh && ensure_python_tools` and export the ORDERFLOW_PYTHON it sets \
                (usually ~/.cache/orderflow/venv/bin/python)";
    let value = std::env::var_os("ORDERFLOW_PYTHON")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("ORDERFLOW_PYTHON is not set. {hint}"));
    let path = PathBuf::from(value);
    assert!(
        path.is_file(),
        "ORDERFLOW_PYTHON={} does not exist. {hint}",
        path.display()
    );
    path
}

/// Partition count override for every topic (`ORDERFLOW_E2E_PARTITIONS`).
pub fn partitions_override() -> Option<i32> {
    std::env::var("ORDERFLOW_E2E_PARTITIONS")
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|n| *n > 0)
}
