//! Processes started beside a stack (the event-flow console, a browser
//! driver): logged in the stack's log directory and stopped with
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

    /// How it exited, once it has exited on its own.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Stack {
    /// Stops a helper (SIGTERM, waiting until it has exited), unless it
    /// has exited already.
    pub async fn stop_helper(&self, helper: &mut Helper) {
        if !helper.proc.reap(&self.pid_dir) && helper.proc.child.is_some() {
            helper
                .proc
                .stop(crate::Stop::Term, &self.pid_dir, &self.id)
                .await;
        }
    }

    /// A TCP port nobody listens on, reserved for this process
    /// ([`crate::free_ports`]).
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
}
