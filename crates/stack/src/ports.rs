//! TCP ports for the processes of a stack.
//!
//! A port is picked free, released, and bound by its process a moment
//! later; a stopped process is started again on the same port (a broker or
//! a PostgreSQL server cannot move: their clients know them by port). Two
//! things can take the port meanwhile:
//! - the kernel, which gives the ports of `ip_local_port_range` to
//!   outgoing connections: every client of every test on the machine. A
//!   port picked by binding port 0 comes from that same range;
//! - another test process picking ports at the same moment.
//!
//! So ports are picked below that range, where the kernel hands out no
//! port by itself, and each is reserved for the life of the process that
//! picked it by an exclusive lock on a file named after it
//! (`<tmp>/orderflow-ports/<port>.lock`). Every picker respects the locks,
//! and the kernel releases them when the process exits, however it exits,
//! so a crashed test leaves nothing to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::TcpListener;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context as _};

/// How many ports below the kernel's range are picked from.
const SPAN: u16 = 12_288;

/// The locks this process holds, one per port it picked; released when
/// it exits.
static RESERVED: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// `n` distinct TCP ports nobody listens on, below the kernel's range
/// for outgoing connections, reserved for this process's lifetime.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    pick_in(range(), n)
}

/// The ports picked from: the [`SPAN`] below `ip_local_port_range`.
fn range() -> Range<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = low.max(2048);
    low.saturating_sub(SPAN).max(1024)..low
}

fn lock_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("orderflow-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `n` ports from `range`, each neither locked by another picker nor
/// bound by anyone, starting at a random place so that pickers started
/// together seldom try the same ports.
fn pick_in(range: Range<u16>, n: usize) -> anyhow::Result<Vec<u16>> {
    let dir = lock_dir()?;
    let len = u32::from(range.end - range.start);
    if len == 0 {
        bail!("no ports to pick from");
    }
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(len)) as u32;
    let mut picked = Vec::with_capacity(n);
    // Held until all are picked: a port bound by this picker is not
    // picked twice (its lock alone would do, but the listener also proves
    // nobody listens there).
    let mut listeners = Vec::with_capacity(n);
    let mut locks = Vec::with_capacity(n);
    for i in 0..len {
        if picked.len() == n {
            break;
        }
        let port = range.start + ((start + i) % len) as u16;
        let path = dir.join(format!("{port}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        picked.push(port);
        listeners.push(listener);
        locks.push(lock);
    }
    if picked.len() < n {
        bail!(
            "only {} of {n} free TCP ports in {}..{} (each is in use, or reserved by another \
             test process in {})",
            picked.len(),
            range.start,
            range.end,
            dir.display()
        );
    }
    RESERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(locks);
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_elsewhere(port: u16) -> bool {
        let f =
            File::create(lock_dir().expect("dir").join(format!("{port}.lock"))).expect("lock file");
        matches!(f.try_lock(), Err(TryLockError::WouldBlock))
    }

    #[test]
    fn ports_are_distinct_reserved_and_outside_the_kernels_range() {
        let r = range();
        let a = free_ports(5).expect("five ports");
        let b = free_ports(5).expect("five more");
        let mut all: Vec<u16> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10, "ten distinct ports: {a:?} {b:?}");
        for p in all {
            assert!(r.contains(&p), "{p} is in {r:?}");
            assert!(locked_elsewhere(p), "{p} is reserved against other pickers");
            // Picked free and released: the process it is meant for can bind it.
            TcpListener::bind(("127.0.0.1", p)).expect("the picked port binds");
        }
    }

    #[test]
    fn a_port_someone_listens_on_is_never_picked() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
        let port = listener.local_addr().expect("its address").port();
        let e = pick_in(port..port + 1, 1).expect_err("the only port is taken");
        assert!(e.to_string().contains("only 0 of 1"), "{e:#}");
    }

    #[test]
    fn a_port_another_picker_reserved_is_never_picked() {
        let port = free_ports(1).expect("a port")[0];
        // Free to bind, but reserved: another picker passes it by.
        let e = pick_in(port..port + 1, 1).expect_err("the only port is reserved");
        assert!(e.to_string().contains("reserved by another"), "{e:#}");
    }
}
