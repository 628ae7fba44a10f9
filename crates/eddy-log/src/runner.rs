//! The loop every named log consumer runs (the store writer, the stream processor), and the task
//! it runs in. [`run_consumer`] reads from an offset in batches, hands each batch to a
//! [`Consumer`], waits for new records (or the stop signal, or a poll interval) once caught up,
//! and on the stop signal lets the consumer make everything durable. [`ConsumerTask`] spawns it,
//! stops it gracefully or aborts it (a crash, in tests).
//!
//! What a consumer's output is, when it is durable and when the consumer offset is committed stay
//! the consumer's: a consumer commits only after its output is durable, so a crash replays from
//! the last commit what was not yet applied. Must not know what a record means.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::{Error, Log, Offset, Record};

/// What the loop does next after [`Consumer::before_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read the next batch.
    Read,
    /// Read nothing this round, as when caught up (e.g. while the consumer's buffers are full).
    Hold,
    /// Start the round over at once (the consumer did some work worth repeating first).
    Again,
}

/// What to do when reading the log fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrors {
    /// Stop the loop with the error (no final [`Consumer::finish`]).
    Stop,
    /// Log it and try again after this long (the log may recover), unless stopping.
    Retry(Duration),
}

/// How [`run_consumer`] reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Name of the consumer, for logs.
    pub name: &'static str,
    /// Most records read (and applied) at once.
    pub batch_records: usize,
    /// Longest wait for new records once caught up (the consumer's periodic work runs at least
    /// this often while idle).
    pub poll: Duration,
    pub read_errors: ReadErrors,
}

/// A named log consumer, driven by [`run_consumer`].
pub trait Consumer: Send {
    /// The consumer's error; log errors convert into it.
    type Error: From<Error> + Send;

    /// Work at the start of every round, before reading: finishing a persist or checkpoint that
    /// completed, periodic upkeep.
    fn before_read(&mut self) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Applies `records`: consecutive, non-empty, starting at the next offset to apply.
    fn apply(&mut self, records: &[Record])
    -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Caught up (nothing read this round), before waiting: e.g. start a persist that is due.
    fn idle(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The stop signal came while caught up: make everything applied durable (and commit it).
    fn finish(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Runs `consumer` over `log` from offset `from` until `stop` turns true while caught up (or a
/// read fails, with [`ReadErrors::Stop`]), then runs [`Consumer::finish`].
pub async fn run_consumer<C: Consumer>(
    log: &dyn Log,
    consumer: &mut C,
    from: Offset,
    mut stop: watch::Receiver<bool>,
    config: RunConfig,
) -> Result<(), C::Error> {
    let mut end = log.watch_end();
    let mut next = from;
    loop {
        let records = match consumer.before_read().await? {
            Step::Again => continue,
            Step::Hold => Vec::new(),
            Step::Read => match log.read(next, config.batch_records) {
                Ok(r) => r,
                Err(e) => match config.read_errors {
                    ReadErrors::Stop => return Err(e.into()),
                    ReadErrors::Retry(after) => {
                        tracing::error!(consumer = config.name, error = %e, offset = next, "{} cannot read the log; retrying", config.name);
                        if *stop.borrow() {
                            break;
                        }
                        tokio::time::sleep(after).await;
                        continue;
                    }
                },
            },
        };
        let Some(last) = records.last() else {
            consumer.idle().await?;
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = end.changed() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep(config.poll) => {}
            }
            continue;
        };
        let after = last.offset + 1;
        consumer.apply(&records).await?;
        next = after;
    }
    consumer.finish().await
}

/// The task a consumer loop runs in, with its stop signal.
#[derive(Debug)]
pub struct ConsumerTask {
    /// What runs, for logs (`store writer`, `stream processor`).
    name: &'static str,
    /// What stopping gracefully makes durable, for logs (`final persist`, `final checkpoint`).
    final_step: &'static str,
    stop: watch::Sender<bool>,
    handle: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ConsumerTask {
    /// A task not started yet.
    pub fn new(name: &'static str, final_step: &'static str) -> Self {
        Self {
            name,
            final_step,
            stop: watch::channel(false).0,
            handle: std::sync::Mutex::new(None),
        }
    }

    /// The stop signal, for [`run_consumer`].
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Whether stopping was asked for.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `run` on the current runtime; an error it ends with is logged.
    pub fn spawn<E: std::fmt::Display>(
        &self,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let name = self.name;
        let handle = tokio::spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "{name} stopped");
            }
        });
        if let Ok(mut h) = self.handle.lock() {
            *h = Some(handle);
        }
    }

    /// Signals the loop to stop and waits until it has run its final step.
    pub async fn stop(&self) {
        // `send_replace` stores the value even before the loop has subscribed (`send` would
        // drop it when there is no receiver yet, and the loop would never stop).
        self.stop.send_replace(true);
        let handle = match self.handle.lock() {
            Ok(mut h) => h.take(),
            Err(_) => {
                tracing::error!(
                    "{} state is poisoned: the {} is skipped; the log keeps what is not durable and the next start replays it",
                    self.name,
                    self.final_step
                );
                return;
            }
        };
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "{} ended abnormally before its {}; the next start replays from the log what is not durable", self.name, self.final_step);
        }
    }

    /// Stops the loop at once, making nothing durable: what a crash does (tests).
    pub async fn abort(&self) {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::wal::{Wal, WalConfig};

    /// Applies records into a list; "durable" up to what `finish` or an idle round saw.
    #[derive(Debug, Default)]
    struct Collect {
        seen: Vec<Offset>,
        idle_rounds: usize,
        finished: bool,
    }

    impl Consumer for Collect {
        type Error = Error;
        async fn before_read(&mut self) -> Result<Step, Error> {
            Ok(Step::Read)
        }
        async fn apply(&mut self, records: &[Record]) -> Result<(), Error> {
            self.seen.extend(records.iter().map(|r| r.offset));
            Ok(())
        }
        async fn idle(&mut self) -> Result<(), Error> {
            self.idle_rounds += 1;
            Ok(())
        }
        async fn finish(&mut self) -> Result<(), Error> {
            self.finished = true;
            Ok(())
        }
    }

    #[tokio::test]
    async fn reads_in_batches_from_the_offset_and_finishes_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let wal: Arc<dyn Log> = Arc::new(Wal::open(WalConfig::new(dir.path())).unwrap());
        let records = (0..10).map(|i| Bytes::from(format!("r{i}"))).collect();
        wal.append(records).unwrap().durable().await.unwrap();
        let (tx, rx) = watch::channel(false);
        let config = RunConfig {
            name: "test",
            batch_records: 3,
            poll: Duration::from_millis(10),
            read_errors: ReadErrors::Stop,
        };
        let log = wal.clone();
        let run = tokio::spawn(async move {
            let mut c = Collect::default();
            run_consumer(log.as_ref(), &mut c, 4, rx, config)
                .await
                .map(|()| c)
        });
        // Stop at once: the loop still reads to the end of the log first.
        tx.send(true).unwrap();
        let c = run.await.unwrap().unwrap();
        assert_eq!(c.seen, (4..10).collect::<Vec<_>>());
        assert!(c.idle_rounds >= 1);
        assert!(c.finished);
    }

    /// A stop asked for before the loop has subscribed to the signal is not lost.
    #[tokio::test]
    async fn a_stop_before_the_loop_subscribes_still_stops_it() {
        let task = Arc::new(ConsumerTask::new("test", "final step"));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let t = task.clone();
        task.spawn(async move {
            // Subscribes only once stop() was called.
            let _ = started_rx.await;
            let stop = t.stop_signal();
            assert!(*stop.borrow(), "the stop asked for earlier is seen");
            Ok::<(), Error>(())
        });
        assert!(!task.stopping());
        let stopping = {
            let task = task.clone();
            tokio::spawn(async move { task.stop().await })
        };
        // stop() has sent (stopping() says so) before the loop subscribed.
        for _ in 0..1_000_000 {
            if task.stopping() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            task.stopping(),
            "the stop was kept although nobody listened yet"
        );
        started_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), stopping)
            .await
            .expect("stop() returned")
            .unwrap();
    }
}
