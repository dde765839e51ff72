//! The layers purest ships: [`Timeout`] and [`ConcurrencyLimit`]. Guards and transforms are
//! layers too (see [`hooks`](crate::hooks)).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::error::HandledError;
use crate::layer::{Incoming, Layer, Next, Outcome};

/// Fails a message whose handling (inner layers, validation, handler) takes longer than a
/// duration with 504; the handler is stopped. On a durable subscription a 504 is retried.
///
/// ```
/// use std::time::Duration;
/// use purest_core::prelude::*;
/// use purest_core::layers::Timeout;
/// async fn slow() -> Result<(), HandledError> { tokio::time::sleep(Duration::from_secs(60)).await; Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Host::new()
///     .service(Service::new("s", "1").command(Command::new("slow", slow).layer(Timeout::new(Duration::from_millis(20)))))
///     .start()
///     .await?;
/// let error = app.client().invoke::<()>("s/1/slow", ()).await.unwrap_err();
/// assert_eq!(error.status, 504);
/// assert!(error.message.contains("s/1/slow did not finish within 20ms"), "{error}");
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    limit: Duration,
}

impl Timeout {
    /// Handling may take at most `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl Layer for Timeout {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let target = incoming.target();
        let what = format!("{}/{}/{}", target.service_name, target.service_version, target.service_target);
        let running = next.run(incoming);
        Box::pin(async move {
            match tokio::time::timeout(self.limit, running).await {
                Ok(outcome) => outcome,
                Err(_) => Err(HandledError::timeout(format!("{what} did not finish within {:?}", self.limit)).into()),
            }
        })
    }
}

/// At most `running` messages are handled at once per instance; up to `waiting` more wait for
/// their turn; beyond that a message is refused at once with 503 (load shedding) instead of
/// joining an ever longer wait. On a durable subscription a 503 is retried later.
///
/// ```
/// use std::time::Duration;
/// use purest_core::prelude::*;
/// use purest_core::layers::ConcurrencyLimit;
/// async fn slow() -> Result<(), HandledError> { tokio::time::sleep(Duration::from_millis(200)).await; Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let limited = Command::new("slow", slow).layer(ConcurrencyLimit::new(1).waiting(1));
/// let app = Host::new().service(Service::new("s", "1").command(limited)).start().await?;
/// let client = app.client();
/// let (a, b, c) = tokio::join!(
///     client.invoke::<()>("s/1/slow", ()),
///     client.invoke::<()>("s/1/slow", ()),
///     client.invoke::<()>("s/1/slow", ()),
/// );
/// let statuses = [a, b, c].map(|r| r.err().map(|e| e.status));
/// assert_eq!(statuses.iter().filter(|s| **s == Some(503)).count(), 1, "one runs, one waits, one is shed");
/// app.shutdown().await;
/// # Ok::<_, purest_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    running: usize,
    waiting: usize,
    state: Arc<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    turns: Semaphore,
    waiting: AtomicUsize,
}

impl ConcurrencyLimit {
    /// At most `running` at once (at least 1), and as many waiting (see [`Self::waiting`]).
    pub fn new(running: usize) -> Self {
        let running = running.max(1);
        Self::with(running, running)
    }

    /// How many may wait for a turn before further messages are refused (0: refuse at once).
    pub fn waiting(self, waiting: usize) -> Self {
        Self::with(self.running, waiting)
    }

    fn with(running: usize, waiting: usize) -> Self {
        Self {
            running,
            waiting,
            state: Arc::new(LimitState {
                turns: Semaphore::new(running),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    fn shed(&self, incoming: &Incoming) -> Outcome {
        let target = incoming.target();
        tracing::warn!(%target, running = self.running, waiting = self.waiting, "at the concurrency limit; message refused");
        Err(HandledError::unavailable(format!(
            "{}/{}/{} is busy ({} running, {} waiting); try again later",
            target.service_name, target.service_version, target.service_target, self.running, self.waiting
        ))
        .into())
    }
}

impl Layer for ConcurrencyLimit {
    fn call<'a>(&'a self, incoming: Incoming, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        let state = &self.state;
        if let Ok(turn) = state.turns.try_acquire() {
            let running = next.run(incoming);
            return Box::pin(async move {
                let _turn = turn;
                running.await
            });
        }
        if state.waiting.fetch_add(1, Ordering::AcqRel) >= self.waiting {
            state.waiting.fetch_sub(1, Ordering::AcqRel);
            return Box::pin(std::future::ready(self.shed(&incoming)));
        }
        let in_line = InLine(&state.waiting);
        Box::pin(async move {
            let turn = state.turns.acquire().await;
            drop(in_line);
            let _turn = turn.expect("the semaphore is never closed");
            next.run(incoming).await
        })
    }

    fn per_instance(&self) -> Option<Arc<dyn Layer>> {
        Some(Arc::new(Self::with(self.running, self.waiting)))
    }
}

/// A place in the waiting line, given up when the turn comes or the caller gives up.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
