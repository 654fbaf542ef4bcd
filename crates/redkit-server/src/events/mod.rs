//! Real-time task changes: published through redkit's store pub/sub (Redis
//! pub/sub, or the embedded store's in-process hub), fanned out in process
//! to the Server-Sent-Events clients of each instance.
//!
//! Each instance holds one subscription on [`CHANNEL`]; a change made on
//! any instance reaches every instance's clients of that user. Pub/sub is
//! at-most-once, so every event is first appended to its user's durable
//! event log (`redkit::events`, topic `user:<id>`, the last 1000 events kept
//! up to 24 h) and carries the log id as its SSE `id:`: a client that
//! reconnects with `Last-Event-ID` is replayed what it missed. When that is
//! impossible (the id is unknown or too old), when the subscription had to
//! be re-established (Redis restarted) or a slow client fell behind,
//! clients get a `resync` event and should refetch `GET /tasks`.

mod stream;

use std::ops::ControlFlow;
use std::sync::Arc;

use redkit::events::{EventLog, EventLogConfig, Replay};
use redkit::store::{AnyStore, FollowEvent, Store, StreamId, follow};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub(crate) use stream::events;

use crate::db::Task;
use crate::shutdown::Shutdown;

/// The pub/sub channel of task changes.
pub const CHANNEL: &str = "events:tasks";

/// Events buffered per SSE client before it is told to resync.
const CLIENT_BUFFER: usize = 256;

/// A change to one of a user's tasks, as clients receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskEvent {
    /// A task was created.
    Created {
        /// The new task.
        task: Task,
    },
    /// A task was changed.
    Updated {
        /// The task after the change.
        task: Task,
    },
    /// A task was deleted.
    Deleted {
        /// Its id.
        id: i64,
    },
    /// A task came due (sent as the SSE event `reminder` with data
    /// `{"task": …, "due_at": …}`).
    Reminder {
        /// The task, as it is when the reminder is delivered.
        task: Task,
        /// The due time the reminder is for.
        due_at: String,
    },
    /// Changes may have been missed: refetch the list.
    Resync,
}

/// What travels on the channel: the event and whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    user_id: i64,
    /// The event's id in the user's event log (absent when it could not be
    /// appended).
    #[serde(default)]
    id: Option<String>,
    event: TaskEvent,
}

/// An event for the clients of this instance; `user_id: None` is for all.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    user_id: Option<i64>,
    pub(crate) id: Option<StreamId>,
    pub(crate) event: TaskEvent,
}

/// Publishes task changes and delivers them to this instance's clients.
#[derive(Debug, Clone)]
pub struct TaskEvents {
    store: AnyStore,
    log: EventLog<AnyStore>,
    local: broadcast::Sender<Arc<Delivery>>,
}

/// The event-log topic of `user_id`.
fn topic(user_id: i64) -> String {
    format!("user:{user_id}")
}

impl TaskEvents {
    /// Subscribes to [`CHANNEL`] (active when this returns, if the store is
    /// reachable; otherwise retried in the background) and delivers until
    /// `shutdown`; keeps the newest `events_kept` events per user.
    pub async fn start(
        store: AnyStore,
        events_kept: usize,
        shutdown: Shutdown,
    ) -> redkit::Result<Self> {
        let (local, _) = broadcast::channel(CLIENT_BUFFER);
        // A user's log is kept 24 h after their last event (the default).
        let log = EventLog::new(
            store.clone(),
            EventLogConfig::default().max_len(events_kept),
        )?;
        let events = TaskEvents { store, log, local };
        let listener = events.clone();
        let following = follow(events.store.clone(), &[CHANNEL], move |event| {
            listener.hear(event);
            ControlFlow::Continue(())
        })
        .await;
        tokio::spawn(async move {
            shutdown.wait().await;
            drop(following);
        });
        Ok(events)
    }

    /// Tells every instance's clients of `user_id` about `event`. A failure
    /// is logged: the change itself is already committed.
    pub async fn publish(&self, user_id: i64, event: TaskEvent) {
        self.publish_after(user_id, event, std::future::ready(()))
            .await;
    }

    /// [`TaskEvents::publish`], broadcasting only once `before` is done:
    /// `before` and the event's log append run together (one round trip
    /// instead of two), and clients hear of the event only after `before`
    /// — for a write, the invalidation of the user's cached tasks, whose
    /// backplane notice then reaches every instance ahead of the event.
    pub async fn publish_after(
        &self,
        user_id: i64,
        event: TaskEvent,
        before: impl Future<Output = ()>,
    ) {
        let payload = match serde_json::to_vec(&event) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a task event");
                before.await;
                return;
            }
        };
        let topic = topic(user_id);
        let ((), appended) = tokio::join!(before, self.log.append(&topic, &payload));
        let id = match appended {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(%error, user_id, "cannot append a task event to the user's event log");
                None
            }
        };
        self.broadcast_envelope(user_id, id, event).await;
    }

    /// Appends `event` to the user's log unless an event with `dedupe_key`
    /// was appended before (a retried or reclaimed reminder job), and
    /// publishes it when appended. Errors are returned so the job retries.
    pub async fn publish_once(
        &self,
        user_id: i64,
        dedupe_key: &str,
        event: TaskEvent,
    ) -> redkit::Result<bool> {
        let payload = serde_json::to_vec(&event).map_err(|source| redkit::Error::Encode {
            key: format!("event for user {user_id}"),
            source: Box::new(source),
        })?;
        match self
            .log
            .append_once(&topic(user_id), dedupe_key, &payload)
            .await?
        {
            Some(id) => {
                self.broadcast_envelope(user_id, Some(id), event).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The user's events after `after`, oldest first, or `None` when they
    /// cannot be replayed (unknown or too old id, store unavailable).
    pub(crate) async fn replay(
        &self,
        user_id: i64,
        after: StreamId,
    ) -> Option<Vec<(StreamId, TaskEvent)>> {
        let mut replayed = Vec::new();
        let mut anchor = after;
        loop {
            let events = match self.log.read_after(&topic(user_id), anchor).await {
                Ok(Replay::Events(events)) => events,
                Ok(Replay::Gap) => return None,
                Err(error) => {
                    tracing::warn!(%error, user_id, "cannot replay a user's events");
                    return None;
                }
            };
            let Some(last) = events.last() else {
                return Some(replayed);
            };
            anchor = last.id;
            for event in events {
                match serde_json::from_slice::<TaskEvent>(&event.payload) {
                    Ok(task_event) => replayed.push((event.id, task_event)),
                    Err(error) => {
                        tracing::warn!(%error, user_id, "a malformed event in the log; resync");
                        return None;
                    }
                }
            }
        }
    }

    async fn broadcast_envelope(&self, user_id: i64, id: Option<StreamId>, event: TaskEvent) {
        let envelope = Envelope {
            user_id,
            id: id.map(|id| id.to_string()),
            event,
        };
        let payload = match serde_json::to_vec(&envelope) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot encode a task event");
                return;
            }
        };
        if let Err(error) = self.store.publish(CHANNEL, &payload).await {
            tracing::warn!(%error, user_id, "cannot publish a task event");
        }
    }

    /// A receiver of this instance's deliveries.
    pub(crate) fn receiver(&self) -> broadcast::Receiver<Arc<Delivery>> {
        self.local.subscribe()
    }

    /// Live SSE clients on this instance.
    pub fn clients(&self) -> usize {
        self.local.receiver_count()
    }

    /// What the subscription brings: a message is delivered to its user's
    /// streams; once the subscription is back after an interruption
    /// (messages were missed), every stream is told to resync.
    fn hear(&self, event: FollowEvent) {
        match event {
            FollowEvent::Message(message) => self.deliver(&message.payload),
            FollowEvent::Missed => self.broadcast(Delivery {
                user_id: None,
                id: None,
                event: TaskEvent::Resync,
            }),
            FollowEvent::Subscribed | FollowEvent::Lost => {}
        }
    }

    fn deliver(&self, payload: &[u8]) {
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(envelope) => self.broadcast(Delivery {
                user_id: Some(envelope.user_id),
                id: envelope.id.and_then(|id| id.parse().ok()),
                event: envelope.event,
            }),
            Err(error) => tracing::warn!(%error, "ignoring a malformed task event"),
        }
    }

    fn broadcast(&self, delivery: Delivery) {
        // No receivers is fine: nobody is listening on this instance.
        let _ = self.local.send(Arc::new(delivery));
    }
}
