//! One waiter for every [`Store::wait`] of a store handle: a single
//! listening connection and one query per wake-up for all the jobs being
//! waited on, however many callers wait.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::events::{Event, COLUMNS};
use super::{Store, StoreError, Wakeups, ENDED_CHANNEL};

type Reply = oneshot::Sender<Result<Event, StoreError>>;

/// The way to the waiter's task, started on first use (and again if the
/// runtime it ran on has ended).
#[derive(Default)]
pub(crate) struct Waiter {
    tx: Mutex<Option<mpsc::UnboundedSender<(i64, Reply)>>>,
}

/// How often the waiter looks without a wake-up.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Waiter {
    fn send(&self, store: &Store, id: i64, reply: Reply) {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let reply = match tx.as_ref() {
            Some(t) => match t.send((id, reply)) {
                Ok(()) => return,
                Err(mpsc::error::SendError((_, reply))) => reply,
            },
            None => reply,
        };
        let (new_tx, rx) = mpsc::unbounded_channel();
        let _ = new_tx.send((id, reply));
        tokio::spawn(run(store.clone(), rx));
        *tx = Some(new_tx);
    }
}

impl Store {
    /// Wait until job `id` ends; returns its terminal event (or
    /// [`StoreError::NoSuchJob`] if there is no such job, or its history
    /// was pruned). All the waits on one store handle (and its clones)
    /// share one listening connection and one query per wake-up; woken by
    /// the store's notifications, it also looks every second. A wait rides
    /// out a database that restarts or is out of reach for a while (the
    /// job goes on, and ends): to give up after a time, wrap it in
    /// `tokio::time::timeout`.
    pub async fn wait(&self, id: i64) -> Result<Event, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.waiter.send(self, id, reply);
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Invalid("the store's waiter stopped".into())))
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<(i64, Reply)>) {
    let mut wakeups = Wakeups::new(&[ENDED_CHANNEL]);
    let mut waiting: HashMap<i64, Vec<Reply>> = HashMap::new();
    loop {
        // Every way out of the select is a reason to look.
        tokio::select! {
            asked = rx.recv() => match asked {
                None => return,
                Some((id, reply)) => {
                    waiting.entry(id).or_default().push(reply);
                    // Take every request already here into this look.
                    while let Ok((id, reply)) = rx.try_recv() {
                        waiting.entry(id).or_default().push(reply);
                    }
                }
            },
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        waiting.retain(|_, replies| {
            replies.retain(|r| !r.is_closed());
            !replies.is_empty()
        });
        if waiting.is_empty() {
            continue;
        }
        // Listen before looking, so an ending between the look and the
        // next wake-up still wakes us.
        let listening = wakeups.connect(&store).await;
        match look_up(&store, &waiting.keys().copied().collect::<Vec<_>>()).await {
            Ok(found) => {
                for (id, ending) in found {
                    for reply in waiting.remove(&id).unwrap_or_default() {
                        let _ = reply.send(ending.clone().ok_or(StoreError::NoSuchJob(id)));
                    }
                }
            }
            // The database may be restarting: the jobs go on and end, so
            // the waits go on too, looking again every second.
            Err(e) => {
                let also = match listening {
                    Err(l) => format!("; cannot listen either: {l}"),
                    Ok(()) => String::new(),
                };
                tracing::warn!("cannot look for job endings (retrying): {e}{also}");
            }
        }
    }
}

/// The jobs among `ids` that ended (with their terminal event) or do not
/// exist (`None`).
async fn look_up(store: &Store, ids: &[i64]) -> Result<Vec<(i64, Option<Event>)>, StoreError> {
    let client = store.client().await?;
    // Live first: a job's ending and the removal of its live row commit
    // together, so a job not live now has its ending visible to the next
    // read, or never existed.
    let live: HashSet<i64> = client
        .query("SELECT id FROM procvisor_jobs WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(|e| StoreError::query("find jobs", e))?
        .iter()
        .map(|r| r.get("id"))
        .collect();
    let ended: Vec<Event> = client
        .query(
            &format!("SELECT {COLUMNS} FROM procvisor_events WHERE job_id = ANY($1) AND terminal"),
            &[&ids],
        )
        .await
        .map_err(|e| StoreError::query("read job endings", e))?
        .iter()
        .map(Event::from_row)
        .collect();
    let ended_ids: HashSet<i64> = ended.iter().map(|e| e.job_id).collect();
    let mut found: Vec<(i64, Option<Event>)> =
        ended.into_iter().map(|e| (e.job_id, Some(e))).collect();
    found.extend(
        ids.iter()
            .filter(|id| !live.contains(id) && !ended_ids.contains(id))
            .map(|&id| (id, None)),
    );
    Ok(found)
}
