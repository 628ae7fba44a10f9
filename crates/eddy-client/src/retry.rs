//! Retries with exponential backoff and full jitter; the server's `Retry-After` / `RetryInfo`
//! is the least wait.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::{Attempt, Error};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// The backoff before the first retry; it doubles each time, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// One attempt, no retries (e.g. for load generation, where a refusal is a result).
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before retry `n` (from 1): a random time up to the exponential backoff ("full
    /// jitter", so clients refused together do not come back together), never less than the
    /// server asked for.
    pub fn delay(&self, n: u32, server: Option<Duration>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let jittered = exp.mul_f64(rand::rng().random_range(0.0..=1.0));
        jittered.max(server.unwrap_or_default())
    }

    /// Runs `attempt` until it is done or the attempts are spent.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Attempt::Done(r) => return r,
                Attempt::Retry { after, why } => {
                    if n >= self.attempts.max(1) {
                        return Err(Error::Exhausted {
                            attempts: n,
                            last: why,
                        });
                    }
                    let wait = self.delay(n, after);
                    tracing::debug!(attempt = n, wait_ms = wait.as_millis() as u64, %why, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_the_server() {
        let r = Retry {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for _ in 0..100 {
            assert!(r.delay(1, None) <= Duration::from_millis(100));
            assert!(r.delay(3, None) <= Duration::from_millis(400));
            assert!(r.delay(30, None) <= Duration::from_secs(1));
            assert!(r.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_or_spent() {
        let calls = AtomicU32::new(0);
        let r = Retry::default();
        let out = r
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Attempt::Retry {
                        after: Some(Duration::from_secs(1)),
                        why: "busy".into(),
                    }
                } else {
                    Attempt::Done(Ok(7))
                }
            })
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let spent = Retry::none()
            .run(|| async {
                Attempt::<()>::Retry {
                    after: None,
                    why: "down".into(),
                }
            })
            .await;
        assert!(matches!(spent, Err(Error::Exhausted { attempts: 1, .. })));
    }
}
