//! Batches over one `StreamEvents` call: [`EventStream::send`] numbers a batch and is refused
//! while `window` batches are unacknowledged (their acks not yet taken with
//! [`EventStream::next_ack`]), so a producer faster than the server is held back instead of
//! queueing without bound. Batches whose ack never came are kept for [`EventStream::unacked`]:
//! their events carry their ids, so sending them again is deduplicated.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_proto::v1 as pb;
use eddy_proto::v1::event_ingestion_service_client::EventIngestionServiceClient;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Ack, Attempt, Client, Error, Event, Rejected, grpc_failure};

/// The answer to one batch of a stream.
#[derive(Debug)]
pub struct StreamAck {
    pub sequence: u64,
    pub result: Result<Ack, Error>,
}

/// An open `StreamEvents` call.
#[derive(Debug)]
pub struct EventStream {
    client_ids: bool,
    tx: Option<mpsc::Sender<pb::StreamEventsRequest>>,
    acks: tonic::Streaming<pb::StreamEventsResponse>,
    window: Arc<Semaphore>,
    /// Batches sent and not acknowledged, with the permit each holds.
    pending: BTreeMap<u64, (Vec<Event>, OwnedSemaphorePermit)>,
    next: u64,
    ended: bool,
}

impl EventStream {
    pub(crate) async fn open(client: &Client, window: usize) -> Result<Self, Error> {
        let Some(ch) = client.channel() else {
            return Err(Error::Config(
                "streams need a gRPC client (Client::grpc)".into(),
            ));
        };
        let window = window.max(1);
        let (tx, rx) = mpsc::channel(window);
        let acks = match EventIngestionServiceClient::new(ch)
            .stream_events(client.request(ReceiverStream::new(rx)))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                return Err(match grpc_failure::<()>(s) {
                    Attempt::Done(Err(e)) => e,
                    Attempt::Retry { why, .. } => Error::Exhausted {
                        attempts: 1,
                        last: why,
                    },
                    Attempt::Done(Ok(())) => Error::Config("unreachable".into()),
                });
            }
        };
        Ok(Self {
            client_ids: client.client_ids,
            tx: Some(tx),
            acks,
            window: Arc::new(Semaphore::new(window)),
            pending: BTreeMap::new(),
            next: 0,
            ended: false,
        })
    }

    /// Sends a batch (all or nothing); refused while the window is full (see
    /// [`EventStream::window_free`]). Waits only while the connection is congested. Returns
    /// its sequence number, which its ack carries.
    pub async fn send(&mut self, mut events: Vec<Event>) -> Result<u64, Error> {
        if self.client_ids {
            for e in &mut events {
                e.ensure_id();
            }
        }
        // Only taking an ack frees a slot, and that needs this handle: a full window is the
        // caller's to drain first (waiting here could never end).
        let permit = self.window.clone().try_acquire_owned().map_err(|_| {
            Error::Config(format!(
                "the window of {} unacknowledged batches is full: take an ack (next_ack) first",
                self.pending.len()
            ))
        })?;
        if self.ended {
            return Err(Error::Transport("the stream ended".into()));
        }
        let Some(tx) = &self.tx else {
            return Err(Error::Config("the stream was finished".into()));
        };
        let sequence = self.next;
        self.next += 1;
        let msg = pb::StreamEventsRequest {
            sequence,
            events: events.iter().map(Event::to_proto).collect(),
            partial: false,
            sync: Some(true),
        };
        self.pending.insert(sequence, (events, permit));
        tx.send(msg)
            .await
            .map_err(|_| Error::Transport("the stream ended".into()))?;
        Ok(sequence)
    }

    /// Batches that can be sent before `send` waits for an ack to be taken.
    pub fn window_free(&self) -> usize {
        self.window.available_permits()
    }

    /// The next ack, in order; `None` once the call ended (see [`EventStream::unacked`]).
    /// An `Err` is how the call ended (e.g. UNAVAILABLE at server shutdown).
    pub async fn next_ack(&mut self) -> Option<Result<StreamAck, Error>> {
        if self.ended {
            return None;
        }
        match self.acks.next().await {
            None => {
                self.ended = true;
                None
            }
            Some(Err(s)) => {
                self.ended = true;
                Some(Err(match grpc_failure::<()>(s) {
                    Attempt::Done(Err(e)) => e,
                    Attempt::Retry { why, .. } => Error::Exhausted {
                        attempts: 1,
                        last: why,
                    },
                    Attempt::Done(Ok(())) => Error::Config("unreachable".into()),
                }))
            }
            Some(Ok(r)) => {
                // Taking the ack frees its place in the window.
                drop(self.pending.remove(&r.sequence));
                let result = match r.outcome {
                    Some(pb::stream_events_response::Outcome::Ack(a)) => Ok(a.into()),
                    Some(pb::stream_events_response::Outcome::Error(e)) => {
                        Err(if e.code == tonic::Code::InvalidArgument as i32 {
                            Error::Rejected {
                                message: e.message,
                                rejected: e.rejected.into_iter().map(Rejected::from).collect(),
                            }
                        } else {
                            Error::Server {
                                code: e.reason,
                                message: e.message,
                            }
                        })
                    }
                    None => Err(Error::Server {
                        code: "empty_ack".into(),
                        message: "an ack without an outcome".into(),
                    }),
                };
                Some(Ok(StreamAck {
                    sequence: r.sequence,
                    result,
                }))
            }
        }
    }

    /// Ends the sending side; the remaining acks can still be read.
    pub fn finish(&mut self) {
        self.tx = None;
    }

    /// The batches sent whose acks have not come (to send again after the call broke).
    pub fn unacked(&self) -> Vec<(u64, Vec<Event>)> {
        self.pending
            .iter()
            .map(|(s, (e, _))| (*s, e.clone()))
            .collect()
    }
}
