//! Collects events and sends them in batches: when `max_events` are waiting or the oldest has
//! waited `linger`. The queue is bounded: `push` waits while `max_pending` batches are being
//! sent (backpressure instead of unbounded memory).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{Ack, Client, Error, Event};

/// When a batch goes.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_events: usize,
    pub linger: Duration,
    /// Batches sent at once.
    pub max_pending: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 1000,
            linger: Duration::from_millis(50),
            max_pending: 4,
        }
    }
}

enum Msg {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

/// What a batcher did, once closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchTotals {
    pub batches: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Errors of batches that failed after their retries, with their event count.
    pub failed: Vec<(usize, String)>,
}

/// A running batcher; [`Batcher::close`] sends what is left and reports.
#[derive(Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Msg>,
    task: tokio::task::JoinHandle<BatchTotals>,
}

impl Batcher {
    pub(crate) fn start(client: Client, config: BatchConfig) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(config.max_events.max(1));
        let task = tokio::spawn(async move {
            let mut totals = BatchTotals::default();
            let mut batch: Vec<Event> = Vec::new();
            let mut sending = tokio::task::JoinSet::new();
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                let linger = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let (go, flushed, closed) = tokio::select! {
                    m = rx.recv() => match m {
                        Some(Msg::Event(e)) => {
                            if batch.is_empty() {
                                deadline = Some(tokio::time::Instant::now() + config.linger);
                            }
                            batch.push(*e);
                            (batch.len() >= config.max_events, None, false)
                        }
                        Some(Msg::Flush(done)) => (true, Some(done), false),
                        None => (true, None, true),
                    },
                    () = linger => (true, None, false),
                };
                if go && !batch.is_empty() {
                    while sending.len() >= config.max_pending.max(1) {
                        if let Some(r) = sending.join_next().await {
                            account(&mut totals, r);
                        }
                    }
                    let events = std::mem::take(&mut batch);
                    let c = client.clone();
                    sending.spawn(async move {
                        let n = events.len();
                        (n, c.send(events).await)
                    });
                    deadline = None;
                }
                if flushed.is_some() || closed {
                    while let Some(r) = sending.join_next().await {
                        account(&mut totals, r);
                    }
                    if let Some(done) = flushed {
                        let _ = done.send(());
                    }
                }
                if closed {
                    return totals;
                }
            }
        });
        Self { tx, task }
    }

    /// Queues an event (waits while the queue is full).
    pub async fn push(&self, event: Event) -> Result<(), Error> {
        self.tx
            .send(Msg::Event(Box::new(event)))
            .await
            .map_err(|_| Error::Config("the batcher has stopped".into()))
    }

    /// Sends everything queued and waits for the answers.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| Error::Config("the batcher has stopped".into()))?;
        wait.await
            .map_err(|_| Error::Config("the batcher has stopped".into()))
    }

    /// Sends what is left and reports what was done.
    pub async fn close(self) -> Result<BatchTotals, Error> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| Error::Config(format!("the batcher failed: {e}")))
    }
}

fn account(
    totals: &mut BatchTotals,
    r: Result<(usize, Result<Ack, Error>), tokio::task::JoinError>,
) {
    totals.batches += 1;
    match r {
        Ok((_, Ok(ack))) => {
            totals.accepted += ack.accepted;
            totals.duplicates += ack.duplicates;
        }
        Ok((n, Err(e))) => totals.failed.push((n, e.to_string())),
        Err(e) => totals.failed.push((0, e.to_string())),
    }
}
