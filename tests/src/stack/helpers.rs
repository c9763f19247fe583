//! Processes a test starts beside its stack (the event-flow console, a
//! browser driver): logged in the stack's log directory and stopped with
//! the stack, by the same watchdog.

use super::*;

/// A process started with [`Stack::spawn_helper`]. Dropping it leaves it
/// running; the stack's watchdog stops it with the stack.
pub struct Helper {
    proc: Proc,
    port: u16,
}

impl Helper {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.proc.log, 40)
    }
}

impl Stack {
    /// A TCP port nobody listens on right now.
    pub fn free_port() -> u16 {
        free_ports(1).expect("a free port")[0]
    }

    /// Starts `program` with `args` and `env` as `name` (its log is
    /// `<name>.log` in the stack's log directory) and waits up to 60 s for
    /// it to listen on `port`.
    pub async fn spawn_helper(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        port: u16,
    ) -> anyhow::Result<Helper> {
        let mut proc = Proc {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.to_vec(),
            env: env.to_vec(),
            log: self.log_dir.join(format!("{name}.log")),
            cwd: None,
            child: None,
        };
        spawn_proc(&mut proc, &self.pid_dir)?;
        wait_for_tcp(&mut proc, port, Duration::from_secs(60)).await?;
        Ok(Helper { proc, port })
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
            ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), self.kafka.clone()),
            ("SCHEMA_REGISTRY_URL".to_owned(), self.registry_url.clone()),
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
