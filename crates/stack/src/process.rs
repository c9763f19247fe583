//! The child processes of a stack: how they are spawned, logged,
//! waited for, stopped, and cleaned up by the watchdog if the test process
//! dies.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};

use crate::env;

/// A child process of the stack.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) log: PathBuf,
    /// Working directory (the workspace root if unset).
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) child: Option<Child>,
}

/// How to stop a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, and wait (30 s at most) for it to exit: a clean stop.
    Term,
    /// SIGKILL: a crash.
    Kill,
    /// SIGQUIT, and wait: PostgreSQL's immediate shutdown, a crash of the
    /// server (no checkpoint; it recovers from its WAL at the next start).
    Quit,
}

impl Proc {
    /// Whether it was started and has exited since.
    pub(crate) fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Forgets a process that has exited on its own (and its pid file, so
    /// the watchdog does not signal the pid later); whether it had.
    pub(crate) fn reap(&mut self, pid_dir: &Path) -> bool {
        if !self.exited() {
            return false;
        }
        self.child = None;
        let _ = std::fs::remove_file(pid_dir.join(format!("{}.pid", self.name)));
        true
    }

    /// Stops the process with `how` and waits until it has exited; panics if it is
    /// not running or does not stop within 30 s of SIGTERM.
    pub(crate) async fn stop(&mut self, how: Stop, pid_dir: &Path, stack_id: &str) -> ExitStatus {
        let name = self.name.clone();
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("stopping {name}: it is not running"));
        let status = match how {
            Stop::Kill => {
                append_log(&self.log, &format!("===== {} stack: SIGKILL", now_stamp()));
                child.start_kill().expect("sending SIGKILL");
                child.wait().await.expect("waiting for the killed process")
            }
            Stop::Term | Stop::Quit => {
                let pid = child.id().expect("running child has a pid");
                let signal = if how == Stop::Term { "TERM" } else { "QUIT" };
                append_log(
                    &self.log,
                    &format!("===== {} stack: SIG{signal}", now_stamp()),
                );
                let out = Command::new("kill")
                    .arg(format!("-{signal}"))
                    .arg(pid.to_string())
                    .output()
                    .await
                    .expect("running kill -TERM");
                assert!(
                    out.status.success(),
                    "kill -{signal} {pid} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                    Ok(s) => s.expect("waiting for the process"),
                    Err(_) => {
                        let _ = child.start_kill();
                        panic!(
                            "{name} did not exit within 30 s of SIG{signal}; last log lines:\n{}",
                            tail(&self.log, 30)
                        );
                    }
                }
            }
        };
        let _ = std::fs::remove_file(pid_dir.join(format!("{name}.pid")));
        let verb = match how {
            Stop::Kill => "killed",
            Stop::Term => "terminated",
            Stop::Quit => "stopped at once",
        };
        eprintln!("stack {stack_id}: {name} {verb} ({status})");
        status
    }
}

/// `sh -c` script of the watchdog (`$1`: the pid directory).
pub(crate) const WATCHDOG_SCRIPT: &str = r#"
cat >/dev/null
pids=""
for f in "$1"/*.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
[ -n "$pids" ] || exit 0
kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt 100 ]; do
  alive=""
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && exit 0
  sleep 0.1
  i=$((i + 1))
done
kill -KILL $pids 2>/dev/null
exit 0
"#;

pub(crate) fn now_stamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Whether process `pid` or one of its descendants listens on TCP `port`,
/// as `/proc` tells (`None` where it does not).
pub(crate) fn listens(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port)?;
    if inodes.is_empty() {
        return Some(false);
    }
    Some(family(pid).into_iter().any(|p| owns_socket(p, &inodes)))
}

/// The inodes of the sockets listening on TCP `port` (any address).
fn listening_inodes(port: u16) -> Option<Vec<String>> {
    let mut read_any = false;
    let mut inodes = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        read_any = true;
        for line in text.lines().skip(1) {
            // sl local_address rem_address st … uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if f.len() > 9 && f[3] == "0A" && local_port == Some(port) {
                inodes.push(f[9].to_owned());
            }
        }
    }
    read_any.then_some(inodes)
}

/// `root` and every process descended from it.
fn family(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Whether `pid` holds one of the sockets `inodes`.
fn owns_socket(pid: u32, inodes: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| target == format!("socket:[{i}]"))
        })
    })
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The broker of a stack with one of its own: `BROKER_BIN` on
/// `127.0.0.1:port` with its durable SQLite engine in `<log_dir>/broker`,
/// started as `scripts/up` starts it.
pub(crate) fn broker_proc(log_dir: &Path, port: u16) -> anyhow::Result<Proc> {
    let program = env::broker_bin();
    if !program.is_file() {
        bail!(
            "the broker binary {} is missing: scripts/test builds it (or set BROKER_BIN)",
            program.display()
        );
    }
    let dir = log_dir.join("broker");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = format!("tcp://127.0.0.1:{port}");
    Ok(Proc {
        name: "broker".into(),
        program,
        args: [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://broker.db",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        log: log_dir.join("broker.log"),
        cwd: Some(dir),
        child: None,
    })
}

pub(crate) fn append_log(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "\n{line}");
    }
}

/// Spawns `p` with stdout/stderr appended to its log and records its pid.
pub(crate) fn spawn_proc(p: &mut Proc, pid_dir: &Path) -> anyhow::Result<()> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .with_context(|| format!("opening {}", p.log.display()))?;
    writeln!(
        log,
        "\n===== {} stack: starting {} {}",
        now_stamp(),
        p.program.display(),
        p.args.join(" ")
    )?;
    let child = Command::new(&p.program)
        .args(&p.args)
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // Only the broker reads it (and would validate records against a
        // registry of its own): never take it from the test's environment.
        .env_remove("SCHEMA_REGISTRY")
        .current_dir(p.cwd.clone().unwrap_or_else(env::workspace_root))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Not killed on drop: the watchdog stops the children gracefully.
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("spawning {}", p.program.display()))?;
    if let Some(pid) = child.id() {
        std::fs::write(pid_dir.join(format!("{}.pid", p.name)), pid.to_string())?;
    }
    p.child = Some(child);
    Ok(())
}

/// Waits until `port` accepts TCP connections; fails early if `p` exits.
pub(crate) async fn wait_for_tcp(p: &mut Proc, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            // The port was picked free a while ago; another process may
            // have taken it since. Only `p`'s own listener counts: with a
            // stranger's, `p` fails to bind and exits (checked below).
            let pid = p.child.as_ref().and_then(Child::id);
            if pid.and_then(|pid| listens(pid, port)) != Some(false) {
                return Ok(());
            }
        }
        if let Some(child) = p.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on port {port}; last lines of {}:\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 30)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on port {port} within {timeout:?}; last lines of {}:\n{}",
                p.name,
                p.log.display(),
                tail(&p.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a command to completion (60 s at most) with its output appended to
/// `log`; fails with the output when it fails.
pub(crate) async fn run_logged(
    program: &Path,
    args: &[&str],
    vars: &[(String, String)],
    log: &Path,
) -> anyhow::Result<()> {
    let fut = Command::new(program)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(env::workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| anyhow::anyhow!("did not finish within 60 s"))?
        .with_context(|| format!("running {}", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    append_log(
        log,
        &format!(
            "===== {} stack: {} {}\n{text}",
            now_stamp(),
            program.display(),
            args.join(" ")
        ),
    );
    if !out.status.success() {
        bail!("exited with {}:\n{text}", out.status);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_told_apart_from_a_strangers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let port = listener.local_addr().expect("its address").port();
        assert_eq!(listens(std::process::id(), port), Some(true));
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawning sleep");
        let verdict = listens(other.id(), port);
        other.kill().ok();
        other.wait().ok();
        assert_eq!(verdict, Some(false), "sleep listens on nothing");
        drop(listener);
        assert_eq!(listens(std::process::id(), port), Some(false));
    }
}
