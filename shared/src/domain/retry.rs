//! Waiting before trying again: exponential back-off with full jitter, the one rule every
//! retry loop uses (store transactions that lost a race, unprocessed batch items, statuses
//! that met a busy recipient).

use std::time::Duration;

/// A number in [0, 1) for back-off jitter.
pub fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Exponential back-off with full jitter: a random wait up to 200 ms × 2^attempt (max 5 s).
pub fn backoff(attempt: u32, random: f64) -> Duration {
    let cap = (200u64 << attempt.min(5)).min(5_000) as f64;
    Duration::from_millis((cap * random.clamp(0.0, 1.0)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_and_is_capped() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(800));
        assert_eq!(backoff(9, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(9, 0.0), Duration::ZERO);
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }
}
