//! Pushes onto lists (commands onto their queues, responses onto reply lists), batched: one
//! task takes what callers hand it, and while one pipeline is with Redis the next requests
//! gather, to go together — one `RPUSH` per list with all its frames, one write for all. Under
//! load that saves a system call and a command dispatch per message on both sides; a lone push
//! goes at once, as it would alone.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

/// Pushes waiting for the batching task at most; further callers wait for room.
const WAITING: usize = 4096;

/// Frames in one pipeline at most.
const BATCH: usize = 512;

/// One frame to push.
pub(crate) struct Push {
    /// The list.
    pub list: String,
    pub frame: bytes::Bytes,
    /// The lease set whose live leases to count in the same round trip (commands).
    pub leases: Option<String>,
    /// The time to live to give the list (reply lists).
    pub ttl: Option<Duration>,
}

/// What became of a push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pushed {
    /// Live leases counted (0 when none were asked for).
    pub serving: u64,
    /// The frame's place in its list just after the push, 1 the head.
    pub position: u64,
}

type Reply = oneshot::Sender<redis::RedisResult<Pushed>>;

/// The handle callers push through.
#[derive(Clone)]
pub(crate) struct Pusher {
    queue: mpsc::Sender<(Push, Reply)>,
}

impl Pusher {
    /// Starts the batching task on `connection`; each pipeline waits at most `timeout`.
    pub fn start(connection: ConnectionManager, timeout: Duration) -> Self {
        let (queue, requests) = mpsc::channel(WAITING);
        tokio::spawn(run(connection, requests, timeout));
        Self { queue }
    }

    /// Pushes one frame and says where it went.
    pub async fn push(&self, push: Push) -> redis::RedisResult<Pushed> {
        let (reply, outcome) = oneshot::channel();
        let gone = || redis::RedisError::from((redis::ErrorKind::Io, "the bridge is closing"));
        self.queue.send((push, reply)).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

async fn run(mut connection: ConnectionManager, mut requests: mpsc::Receiver<(Push, Reply)>, timeout: Duration) {
    let mut batch: Vec<(Push, Reply)> = Vec::with_capacity(BATCH);
    while requests.recv_many(&mut batch, BATCH).await > 0 {
        send(&mut connection, &mut batch, timeout).await;
        batch.clear();
    }
}

/// One pipeline for `batch`: per list, a `ZCOUNT` of its leases if asked, one `RPUSH` of all its
/// frames in order, a `PEXPIRE` if asked; then each caller hears where its frame went.
async fn send(connection: &mut ConnectionManager, batch: &mut Vec<(Push, Reply)>, timeout: Duration) {
    // Lists in first-seen order, each with the indexes of its frames.
    let mut lists: Vec<(usize, Vec<usize>)> = Vec::new();
    for (index, (push, _)) in batch.iter().enumerate() {
        match lists.iter_mut().find(|(first, _)| batch[*first].0.list == push.list) {
            Some((_, members)) => members.push(index),
            None => lists.push((index, vec![index])),
        }
    }
    let now = crate::now_ms();
    let mut pipe = redis::pipe();
    for (first, members) in &lists {
        let head = &batch[*first].0;
        if let Some(leases) = &head.leases {
            pipe.cmd("ZCOUNT").arg(leases).arg(now).arg("+inf");
        }
        pipe.cmd("RPUSH").arg(&head.list);
        for member in members {
            pipe.arg(&batch[*member].0.frame[..]);
        }
        if let Some(ttl) = head.ttl {
            pipe.cmd("PEXPIRE").arg(&head.list).arg(ttl.as_millis() as u64).ignore();
        }
    }
    let outcome = match tokio::time::timeout(timeout, pipe.query_async::<Vec<u64>>(connection)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time"))),
    };
    let counts = match outcome {
        Ok(counts) => counts,
        Err(e) => {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut counts = counts.into_iter();
    let mut places = vec![Pushed { serving: 0, position: 0 }; batch.len()];
    for (first, members) in &lists {
        let serving = match batch[*first].0.leases {
            Some(_) => counts.next().unwrap_or(0),
            None => 0,
        };
        let length = counts.next().unwrap_or(0);
        for (k, member) in members.iter().enumerate() {
            let after = (members.len() - 1 - k) as u64;
            places[*member] = Pushed {
                serving,
                position: length.saturating_sub(after),
            };
        }
    }
    for ((_, reply), pushed) in batch.drain(..).zip(places) {
        let _ = reply.send(Ok(pushed));
    }
}
