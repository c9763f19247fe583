//! The stack of a test: the stack library's [`orderflow_stack::Stack`]
//! (processes, databases, topics; reachable through `Deref`) with what the
//! tests add: an HTTP client that carries the harness's token, the default
//! deadline of saga waits and the payment methods the harness registered.

use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Mutex;

pub use orderflow_stack::stack::{roles, Helper};
pub use orderflow_stack::{tail, Service, Smtp, StackOptions};

use crate::env;

/// A fully isolated orderflow stack for one test (see
/// [`orderflow_stack::Stack`]); dropping it stops every process it started.
pub struct Stack {
    inner: orderflow_stack::Stack,
    /// Default deadline of saga waits.
    pub timeout: Duration,
    pub(crate) http: reqwest::Client,
    /// Payment methods registered by the harness, by `(customer, token)`.
    pub(crate) payment_methods: Mutex<HashMap<(String, String), String>>,
}

impl Deref for Stack {
    type Target = orderflow_stack::Stack;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Stack {
    /// Starts a stack; panics with a clear message when something is
    /// missing or does not come up (processes started so far are stopped).
    pub async fn start(options: StackOptions) -> Stack {
        match Self::try_start(options).await {
            Ok(stack) => stack,
            Err(e) => panic!("could not start the e2e stack: {e:#}"),
        }
    }

    /// Starts a stack with the default options.
    pub async fn start_default() -> Stack {
        Self::start(StackOptions::default()).await
    }

    async fn try_start(options: StackOptions) -> anyhow::Result<Stack> {
        // Every request of the harness carries a token of the development
        // key with the operator and service roles (tests/auth.rs sends
        // others with a client of its own).
        let mut headers = reqwest::header::HeaderMap::new();
        let token = env::harness_token().context("minting the harness token")?;
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().context("token header")?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        let inner = orderflow_stack::Stack::start(options).await?;
        Ok(Stack {
            inner,
            timeout: env::saga_timeout(),
            http,
            payment_methods: Mutex::new(HashMap::new()),
        })
    }

    /// The harness's HTTP client (its requests carry a token with the
    /// operator and service roles).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A TCP port nobody listens on right now.
    pub fn free_port() -> u16 {
        orderflow_stack::Stack::free_port()
    }

    /// Starts `orderctl console` on this stack (its five services, its
    /// broker and topic prefix, the harness's operator token, the
    /// development key's public half for the tokens of redrives).
    pub async fn spawn_console(&self) -> anyhow::Result<Helper> {
        let port = Self::free_port();
        let mut args = vec![
            "console".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--interval".to_owned(),
            "1s".to_owned(),
        ];
        for svc in Service::ALL {
            args.push("--service".to_owned());
            args.push(format!("{}={}", svc.binary(), self.url(svc)));
        }
        let env = vec![
            (
                "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
                self.kafka_bootstrap_servers().to_owned(),
            ),
            (
                "SCHEMA_REGISTRY_URL".to_owned(),
                self.registry_url().to_owned(),
            ),
            ("ORDERFLOW_TOPIC_PREFIX".to_owned(), self.prefix.clone()),
            ("ORDERFLOW_TOKEN".to_owned(), env::harness_token()?),
            (
                "AUTH_PUBLIC_KEY_FILE".to_owned(),
                env::dev_key("jwt-dev.pub.pem").display().to_string(),
            ),
        ];
        self.spawn_helper(
            "console",
            &env::bin_dir().join("orderctl"),
            &args,
            &env,
            port,
        )
        .await
    }
}
