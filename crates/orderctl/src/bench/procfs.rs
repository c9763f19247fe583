//! What `/proc` says of the stack's processes: CPU ticks, resident memory,
//! the PostgreSQL server processes grouped by database, the machine's busy
//! time (`orderctl bench snap` writes one snapshot as JSON); and what the
//! machine is, and `top`'s view of it, for a run's record.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One process of the stack at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// User + system CPU time so far, in clock ticks (1/100 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticks: Option<u64>,
    /// Resident set now, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<u64>,
    /// Peak resident set (VmHWM), KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwm_kib: Option<u64>,
    /// It had exited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

/// One PostgreSQL server process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgProc {
    /// `postgres bench_<service>`, `postgres (other databases)` or
    /// `postgres (background)`.
    pub group: String,
    /// CPU ticks so far.
    pub ticks: u64,
}

/// A snapshot of the stack and the machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the epoch.
    pub t: f64,
    /// The named processes.
    pub procs: BTreeMap<String, Proc>,
    /// PostgreSQL's processes, by pid.
    pub pg: BTreeMap<String, PgProc>,
    /// The machine's (total, idle) jiffies since boot.
    pub jiffies: (u64, u64),
    /// `/proc/loadavg`'s three averages.
    pub loadavg: Vec<String>,
}

/// User + system ticks of `pid`.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ticks_of_stat(&stat)
}

/// Fields 14 and 15 of a `/proc/<pid>/stat` line (after the command name,
/// which may hold spaces and parentheses).
fn ticks_of_stat(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `key` (e.g. `VmRSS`) of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The group of a PostgreSQL process from its command line, if it is one.
fn pg_group(cmdline: &str) -> Option<String> {
    if let Some(rest) = cmdline.strip_prefix("postgres: ") {
        let mut words: Vec<&str> = rest.split_whitespace().collect();
        // Debian names the cluster first: "15/main:".
        if words.first().is_some_and(|w| w.ends_with(':')) {
            words.remove(0);
        }
        let client = words.len() >= 3 && (words[2].contains('(') || words[2] == "[local]");
        return Some(if client {
            let db = words[1];
            if db.starts_with("bench_") {
                format!("postgres {db}")
            } else {
                "postgres (other databases)".to_owned()
            }
        } else {
            "postgres (background)".to_owned()
        });
    }
    (cmdline.contains("/postgresql/") && cmdline.contains("/bin/postgres"))
        .then(|| "postgres (background)".to_owned())
}

fn pg_processes() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        Some((pid, pg_group(cmd.trim())?))
    })
    .collect()
}

/// (total, idle + iowait) jiffies of the machine.
fn total_jiffies() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let vals: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = vals.get(3).copied().unwrap_or(0) + vals.get(4).copied().unwrap_or(0);
    Ok((vals.iter().take(8).sum(), idle))
}

/// Takes a snapshot of the processes `named` (`name=pid` each).
pub fn snap(named: &[String]) -> anyhow::Result<Snapshot> {
    let mut procs = BTreeMap::new();
    for item in named {
        let (name, pid) = item
            .split_once('=')
            .with_context(|| format!("{item:?} is not name=pid"))?;
        let pid: u32 = pid
            .parse()
            .with_context(|| format!("{item:?}: not a pid"))?;
        let p = match ticks(pid) {
            Some(t) => Proc {
                pid,
                ticks: Some(t),
                rss_kib: status_kib(pid, "VmRSS"),
                hwm_kib: status_kib(pid, "VmHWM"),
                gone: false,
            },
            None => Proc {
                pid,
                gone: true,
                ..Proc::default()
            },
        };
        procs.insert(name.to_owned(), p);
    }
    let pg = pg_processes()
        .into_iter()
        .filter_map(|(pid, group)| {
            Some((
                pid.to_string(),
                PgProc {
                    group,
                    ticks: ticks(pid)?,
                },
            ))
        })
        .collect();
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    Ok(Snapshot {
        t: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
        procs,
        pg,
        jiffies: total_jiffies()?,
        loadavg,
    })
}

/// Writes [`snap`] of `named` to `path`.
pub fn write_snap(path: &Path, named: &[String]) -> anyhow::Result<()> {
    let s = snap(named)?;
    std::fs::write(path, serde_json::to_vec(&s)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The first `lines` lines of one `top -b -n1 -w 200` (empty when top is
/// missing).
pub async fn top(lines: usize) -> String {
    let out = tokio::process::Command::new("top")
        .args(["-b", "-n1", "-w", "200"])
        .output()
        .await;
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .take(lines)
            .map(|l| format!("{l}\n"))
            .collect()
    })
    .unwrap_or_default()
}

/// What the machine is and what ran: date, cores, CPU model, memory, load
/// average, commit, build profile, the load's flags.
pub fn machine(label: &str) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let loadavg: Vec<String> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(orderflow_stack::env::workspace_root())
            .output()
            .ok()
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let dirty = git(&["diff", "--quiet"]).is_some_and(|o| o.status.code() == Some(1));
    let profile = std::env::var("ORDERFLOW_PROFILE").unwrap_or_else(|_| {
        orderflow_stack::env::bin_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    serde_json::json!({
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "nproc": std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        "cpu": cpu,
        "mem_total_gib": mem_kib / (1024 * 1024),
        "loadavg_before": loadavg.join(" "),
        "git": format!("{commit}{}", if dirty { "+dirty" } else { "" }),
        "profile": profile,
        "args": label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(ticks_of_stat(stat), Some(325));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn postgres_processes_are_grouped_by_bench_database() {
        assert_eq!(
            pg_group("postgres: 15/main: orderflow bench_order 127.0.0.1(5432) idle").as_deref(),
            Some("postgres bench_order")
        );
        assert_eq!(
            pg_group("postgres: postgres test [local] idle").as_deref(),
            Some("postgres (other databases)")
        );
        assert_eq!(
            pg_group("postgres: 15/main: walwriter").as_deref(),
            Some("postgres (background)")
        );
        assert_eq!(
            pg_group("/usr/lib/postgresql/15/bin/postgres -D /var/lib/x").as_deref(),
            Some("postgres (background)")
        );
        assert_eq!(pg_group("/usr/bin/order-service"), None);
    }

    #[test]
    fn a_snapshot_of_this_process_has_its_ticks_and_memory() {
        let me = std::process::id();
        let s = snap(&[format!("me={me}"), "gone=999999999".to_owned()]).expect("a snapshot");
        let p = &s.procs["me"];
        assert!(
            p.ticks.is_some() && p.rss_kib.is_some_and(|k| k > 0),
            "{p:?}"
        );
        assert!(s.procs["gone"].gone);
        assert!(s.jiffies.0 >= s.jiffies.1 && s.jiffies.0 > 0);
        assert!(snap(&["no-pid".to_owned()]).is_err());
    }
}
