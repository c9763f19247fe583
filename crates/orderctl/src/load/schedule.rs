//! Open-loop send schedule and duration parsing (pure functions).
//!
//! In open-loop mode order `i` (0-based) is due at `start + i / rate`. The
//! sender sleeps until the next order is due and then sends every order that
//! is due by then, so a late wake-up (a busy machine, a full in-flight
//! window) is followed by a burst that catches up with the schedule instead
//! of silently lowering the rate.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// When order `i` is due, relative to the start of the run.
pub fn offset(i: u64, rate: u32) -> Duration {
    let nanos = u128::from(i) * NANOS_PER_SEC / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// How many orders a run at `rate` orders/s sends in `duration`: every `i`
/// whose [`offset`] is before the end.
pub fn planned_orders(rate: u32, duration: Duration) -> u64 {
    let n = (duration.as_nanos() * u128::from(rate)).div_ceil(NANOS_PER_SEC);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// How many orders are due `elapsed` after the start (offset ≤ elapsed),
/// capped at `planned`.
pub fn due_orders(elapsed: Duration, rate: u32, planned: u64) -> u64 {
    let n = elapsed.as_nanos() * u128::from(rate) / NANOS_PER_SEC + 1;
    u64::try_from(n).unwrap_or(u64::MAX).min(planned)
}

/// A duration flag of `orderctl load`: the shared format
/// ([`orderflow_service::config::parse_duration`]: `60s`, `500ms`, `2m`,
/// `1h`, a bare number of seconds), greater than zero and at most 7 days.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = orderflow_service::config::parse_duration(s)?;
    if d > Duration::from_secs(7 * 86_400) {
        return Err(format!("{s:?} is too long (at most 7 days)"));
    }
    Ok(d)
}

/// Parses a share between 0 and 1 (`0.05`) or a percentage (`5%`).
pub fn parse_share(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (number, divisor) = match s.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number between 0 and 1 (or 0% to 100%)"))?;
    let v = v / divisor;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?} is not between 0 and 1 (or 0% to 100%)"));
    }
    Ok(v)
}

/// Whether order `i` uses the declining payment token, so that exactly
/// `round(n * share)` of the first `n` orders do, spread evenly.
pub fn is_declined(i: u64, share: f64) -> bool {
    let before = (i as f64 * share).floor();
    let after = ((i + 1) as f64 * share).floor();
    after > before
}

/// A small deterministic PRNG (xorshift64*) for SKU and quantity choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced, xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_orders_counts_every_offset_before_the_end() {
        assert_eq!(planned_orders(500, Duration::from_secs(60)), 30_000);
        assert_eq!(planned_orders(200, Duration::from_secs(60)), 12_000);
        assert_eq!(planned_orders(5, Duration::from_millis(500)), 3);
        assert_eq!(planned_orders(3, Duration::from_secs(1)), 3);
        assert_eq!(planned_orders(1, Duration::from_millis(1)), 1);
        // Consistent with offset(): the last planned order is before the
        // end, the next one is not.
        for (rate, d) in [(500, 60_000), (7, 1_000), (333, 2_500), (1, 10)] {
            let d = Duration::from_millis(d);
            let n = planned_orders(rate, d);
            assert!(offset(n - 1, rate) < d, "rate {rate} d {d:?}");
            assert!(offset(n, rate) >= d, "rate {rate} d {d:?}");
        }
    }

    #[test]
    fn offsets_are_evenly_spaced() {
        assert_eq!(offset(0, 500), Duration::ZERO);
        assert_eq!(offset(1, 500), Duration::from_millis(2));
        assert_eq!(offset(500, 500), Duration::from_secs(1));
        assert_eq!(offset(1, 3), Duration::from_nanos(333_333_333));
        assert_eq!(offset(29_999, 500), Duration::from_millis(59_998));
    }

    #[test]
    fn due_orders_catch_up_after_a_late_wake_up() {
        assert_eq!(due_orders(Duration::ZERO, 500, 100), 1);
        assert_eq!(due_orders(Duration::from_micros(1_999), 500, 100), 1);
        assert_eq!(due_orders(Duration::from_millis(2), 500, 100), 2);
        // 50 ms late: 26 orders are due at once (a burst).
        assert_eq!(due_orders(Duration::from_millis(50), 500, 100), 26);
        assert_eq!(due_orders(Duration::from_secs(3600), 500, 100), 100);
    }

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        let parse = parse_positive_duration;
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "ten", "10x", "-1s", "1e3s", "9999h", "0s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("1ms").is_ok());
    }

    #[test]
    fn shares_parse_as_fraction_or_percent() {
        assert_eq!(parse_share("0.05"), Ok(0.05));
        assert_eq!(parse_share("5%"), Ok(0.05));
        assert_eq!(parse_share("0"), Ok(0.0));
        assert_eq!(parse_share("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "101%", "x", ""] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn declined_orders_follow_the_share_exactly() {
        for share in [0.0, 0.05, 0.1, 1.0 / 3.0, 0.5, 1.0] {
            let n = 10_000;
            let declined = (0..n).filter(|&i| is_declined(i, share)).count();
            let expected = (n as f64 * share).floor() as usize;
            assert_eq!(declined, expected, "share {share}");
        }
        // Spread evenly, not clumped at the start.
        let first_hundred = (0..100).filter(|&i| is_declined(i, 0.05)).count();
        assert_eq!(first_hundred, 5);
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            assert!(x < 7);
        }
        assert_ne!(Rng::new(0).next_u64(), 0);
    }
}
