//! A broker of one test, on durable storage, that the test can kill and
//! start again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use orderflow_events::testing;
use uuid::Uuid;

use crate::helpers::WAIT;

/// A broker (nisshi, `BROKER_BIN`) of one test, with durable (sqlite) storage in a directory
/// of its own, so it can be killed and restarted on the same port with its
/// topics, records and offsets intact.
pub struct OwnBroker {
    pub port: u16,
    dir: PathBuf,
    storage: String,
    child: Option<Child>,
}

impl OwnBroker {
    pub async fn start() -> Self {
        Self::start_on("sqlite://broker.db").await
    }

    /// Starts a broker on `storage` (a `sqlite://` URL relative to its
    /// directory, with the broker's options as its query).
    pub async fn start_on(storage: &str) -> Self {
        // Reserved below the kernel's range for outgoing connections, so
        // that nothing takes it while the broker is stopped.
        let port = orderflow_stack::free_ports(1).expect("a free port")[0];
        let dir =
            std::env::temp_dir().join(format!("orderflow-broker-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Self {
            port,
            dir,
            storage: storage.to_owned(),
            child: None,
        };
        b.restart().await;
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let bin = std::env::var("BROKER_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "/root/.cache/orderflow/broker/nisshi".to_owned());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .expect("broker log");
        let child = Command::new(&bin)
            .current_dir(&self.dir)
            .env_remove("SCHEMA_REGISTRY")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start the broker {bin}: {e} (set BROKER_BIN)"));
        self.child = Some(child);
        let addr = self.bootstrap();
        testing::eventually("own broker to accept connections", WAIT, || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        })
        .await;
    }

    /// Kills the broker (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
