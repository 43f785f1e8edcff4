//! The retry policy: exponential backoff with full jitter inside a bounded total time.
//!
//! One `Backoff` value is built by each binary and passed down; tests pass a fast one.
//! What counts as worth retrying is the error's business (`Retryable`), not this module's:
//! it never looks at messages or status codes itself.

use std::future::Future;
use std::time::{Duration, Instant};

/// An error that can say whether trying again might help.
pub trait Retryable: Sized {
    /// 429, 5xx, a reset connection or a body cut short.
    fn is_transient(&self) -> bool;
    /// How long the server asked us to wait (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration>;
    /// Wraps the last error once the budget is spent.
    #[must_use]
    fn gave_up(self, attempts: u32, elapsed: Duration, wanted_wait: Option<Duration>) -> Self;
}

/// Exponential backoff with jitter, bounded by a total time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay ceiling of the first retry.
    pub initial: Duration,
    /// Largest delay between two attempts.
    pub max: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for Backoff {
    /// What the binaries use: long enough to ride out a registry restart or a rate-limit
    /// window of a few seconds, short enough that a Concourse check never stalls for long.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(4),
            max_elapsed: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (0-based): a random point in
    /// `[ceiling/2, ceiling]`, where the ceiling doubles from `initial` up to `max`.
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.initial.saturating_mul(1 << retry.min(20)).min(self.max);
        let half = ceiling / 2;
        let spread = u64::try_from(ceiling.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if spread == 0 { 0 } else { random_u64() % spread })
    }

    /// Runs `op` until it succeeds, fails with a permanent error, or the budget is spent.
    ///
    /// # Errors
    /// The permanent error, or the last transient one wrapped by [`Retryable::gave_up`].
    pub async fn retry<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = self.attempts();
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => attempts.wait_after(e).await?,
            }
        }
    }

    /// The bookkeeping of one retried operation, for loops that `retry` does not fit (a
    /// download that resumes where it stopped).
    #[must_use]
    pub fn attempts(&self) -> Attempts {
        Attempts {
            policy: *self,
            start: Instant::now(),
            made: 0,
        }
    }
}

/// Attempts made so far at one operation, and the clock of its budget.
#[derive(Debug)]
pub struct Attempts {
    policy: Backoff,
    start: Instant,
    made: u32,
}

impl Attempts {
    /// After a failed attempt: sleeps before the next one (the backoff's delay, or the
    /// server's `Retry-After` when that is longer), or returns the error to give up with.
    /// A `Retry-After` longer than the remaining budget ends the attempts at once,
    /// because sleeping past the budget would only delay the same failure.
    ///
    /// # Errors
    /// The permanent error, or the transient one wrapped by [`Retryable::gave_up`].
    pub async fn wait_after<E: Retryable + std::fmt::Display>(&mut self, err: E) -> Result<(), E> {
        self.made += 1;
        if !err.is_transient() {
            return Err(err);
        }
        let elapsed = self.start.elapsed();
        let asked = err.retry_after();
        // A `Retry-After` may lengthen the backoff, never shorten it: `Retry-After: 0`
        // would otherwise turn it off.
        let backoff = self.policy.delay(self.made - 1);
        let wait = asked.map_or(backoff, |a| a.max(backoff));
        // saturating: a server may ask for any wait at all
        if elapsed.saturating_add(wait) > self.policy.max_elapsed {
            let too_long = asked.filter(|a| elapsed.saturating_add(*a) > self.policy.max_elapsed);
            return Err(err.gave_up(self.made, elapsed, too_long));
        }
        tracing::warn!("{err}; retrying in {wait:.1?} (attempt {})", self.made + 1);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Starts the budget afresh: the operation made progress since the last failure.
    pub fn reset(&mut self) {
        self.start = Instant::now();
        self.made = 0;
    }
}

/// A random number from the standard library's per-process hash keys: enough for jitter,
/// and no extra dependency.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
            max_elapsed: Duration::from_secs(10),
        };
        for _ in 0..50 {
            let d0 = b.delay(0);
            assert!(
                d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100),
                "{d0:?}"
            );
            let d3 = b.delay(3);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800),
                "{d3:?}"
            );
            assert!(b.delay(40) <= Duration::from_millis(800));
        }
    }

    #[derive(Debug)]
    struct E {
        transient: bool,
        after: Option<Duration>,
        gave_up: Option<(u32, Option<Duration>)>,
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("e")
        }
    }
    impl Retryable for E {
        fn is_transient(&self) -> bool {
            self.transient
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
        fn gave_up(mut self, attempts: u32, _: Duration, wanted: Option<Duration>) -> Self {
            self.gave_up = Some((attempts, wanted));
            self
        }
    }

    fn fast() -> Backoff {
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            max_elapsed: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), E> = fast()
            .retry(|| {
                calls += 1;
                async {
                    Err(E {
                        transient: false,
                        after: None,
                        gave_up: None,
                    })
                }
            })
            .await;
        assert_eq!(calls, 1);
        assert!(r.unwrap_err().gave_up.is_none());
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let r = fast()
            .retry(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(E {
                            transient: true,
                            after: None,
                            gave_up: None,
                        })
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_zero_retry_after_keeps_the_backoff() {
        let policy = Backoff {
            initial: Duration::from_millis(40),
            max: Duration::from_millis(40),
            max_elapsed: Duration::from_millis(300),
        };
        let mut calls = 0;
        let start = std::time::Instant::now();
        let _: Result<(), E> = policy
            .retry(|| {
                calls += 1;
                async {
                    Err(E {
                        transient: true,
                        after: Some(Duration::ZERO),
                        gave_up: None,
                    })
                }
            })
            .await;
        // at least 20 ms between attempts: about 300 / 20 at most, not thousands
        assert!(calls <= 16, "{calls} attempts in {:?}", start.elapsed());
        assert!(calls >= 3, "{calls}");
    }

    #[tokio::test]
    async fn budget_ends_retries_and_long_retry_after_gives_up_at_once() {
        let r: Result<(), E> = fast()
            .retry(|| async {
                Err(E {
                    transient: true,
                    after: None,
                    gave_up: None,
                })
            })
            .await;
        let (attempts, wanted) = r.unwrap_err().gave_up.unwrap();
        assert!(attempts > 3, "{attempts}");
        assert_eq!(wanted, None);

        let mut calls = 0;
        let r: Result<(), E> = fast()
            .retry(|| {
                calls += 1;
                async {
                    Err(E {
                        transient: true,
                        after: Some(Duration::from_mins(1)),
                        gave_up: None,
                    })
                }
            })
            .await;
        assert_eq!(calls, 1);
        assert_eq!(r.unwrap_err().gave_up.unwrap().1, Some(Duration::from_mins(1)));
    }
}
