//! Per-key limits: a token bucket for the request rate and a cap on the
//! requests in flight at once. Both live in the memory of one instance.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one key, resolved against the server's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per second added to the bucket.
    pub rate_per_sec: u32,
    /// The bucket's size: the largest burst.
    pub burst: u32,
    /// Requests in flight at once.
    pub max_concurrent: u32,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bucket is empty; a token is back after this long.
    Rate {
        /// When to try again.
        retry_after: Duration,
    },
    /// The key has as many requests in flight as it may.
    Concurrency,
    /// The work costs more tokens than the key's bucket holds: it can never
    /// be admitted (ask for less at once, or give the key a larger burst).
    OverBurst {
        /// What the work costs.
        cost: u32,
        /// The key's burst.
        burst: u32,
    },
}

/// The live state of one key's limits.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    bucket: Mutex<Bucket>,
    in_flight: Arc<Semaphore>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Holds one of the key's in-flight slots until dropped.
#[derive(Debug)]
pub struct Admission {
    _slot: OwnedSemaphorePermit,
}

impl Limiter {
    /// A limiter with a full bucket and no request in flight.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limits.burst),
                at: Instant::now(),
            }),
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
        }
    }

    /// The limits this limiter enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes `cost` tokens, or says when they will be there.
    pub fn take(&self, cost: u32) -> Result<(), Refusal> {
        if cost > self.limits.burst {
            return Err(Refusal::OverBurst {
                cost,
                burst: self.limits.burst,
            });
        }
        let rate = f64::from(self.limits.rate_per_sec.max(1));
        let cost = f64::from(cost);
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refilled = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refilled).min(f64::from(self.limits.burst));
        bucket.at = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let missing = cost - bucket.tokens;
        Err(Refusal::Rate {
            retry_after: Duration::from_secs_f64(missing / rate),
        })
    }

    /// Admits one request: a token from the bucket and an in-flight slot.
    pub fn admit(&self) -> Result<Admission, Refusal> {
        let slot = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Concurrency)?;
        self.take(1)?;
        Ok(Admission { _slot: slot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate_per_sec: u32, burst: u32, max_concurrent: u32) -> Limiter {
        Limiter::new(Limits {
            rate_per_sec,
            burst,
            max_concurrent,
        })
    }

    #[test]
    fn a_burst_empties_the_bucket_and_says_when_to_come_back() {
        let limiter = limiter(1, 3, 10);
        for _ in 0..3 {
            assert!(limiter.admit().is_ok());
        }
        match limiter.admit() {
            Err(Refusal::Rate { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
    }

    #[test]
    fn in_flight_slots_come_back_when_admissions_drop() {
        let limiter = limiter(1000, 1000, 2);
        let first = limiter.admit().expect("first");
        let _second = limiter.admit().expect("second");
        assert_eq!(limiter.admit().err(), Some(Refusal::Concurrency));
        drop(first);
        assert!(limiter.admit().is_ok());
    }

    #[test]
    fn a_cost_larger_than_the_bucket_is_refused() {
        let limiter = limiter(10, 5, 1);
        assert_eq!(
            limiter.take(6),
            Err(Refusal::OverBurst { cost: 6, burst: 5 })
        );
        assert!(limiter.take(5).is_ok());
    }
}
