//! The loop every registration runs: read what arrived (blocking, on a connection of its own)
//! while there is room for it, run the handlers inline, renew what the registration holds in
//! Redis on a timer, and, once closed, finish what it took before it stops.
//!
//! A read in flight is never dropped: what Redis handed out with it would be taken and unseen (a
//! popped command lost, a stream entry pending on a consumer that never handles it). So a closing
//! consumer waits for its last read (at most [`BLOCK`](crate::link::BLOCK)) and handles that too.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use purest_core::bridge::Registration;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::link::Link;

/// What one registration reads and how it handles it.
pub(crate) trait Source: Send + 'static {
    /// One thing read.
    type Item: Send + 'static;

    /// Reads up to `room` items, waiting at most [`BLOCK`](crate::link::BLOCK).
    fn read(&self, connection: MultiplexedConnection, room: usize) -> BoxFuture<'static, redis::RedisResult<Vec<Self::Item>>>;

    /// Called with what a read returned, before it is handled.
    fn advance(&mut self, _items: &[Self::Item]) {}

    /// Handles one item to the end (acknowledged, answered, or left for another consumer).
    fn handle(&self, item: Self::Item) -> BoxFuture<'static, ()>;

    /// How often [`Source::tick`] runs.
    fn tick_every(&self) -> Duration;

    /// Renews what the registration holds (a lease), or claims what others left (at most `room`
    /// items): items to handle.
    fn tick(&self, room: usize) -> BoxFuture<'static, Vec<Self::Item>>;

    /// Sets up what reading needs (a consumer group), after connecting and after a reconnect.
    fn prepare(&self) -> BoxFuture<'static, redis::RedisResult<()>>;

    /// Called once when the registration closes, before the last read is waited for.
    fn closing(&self) -> BoxFuture<'static, ()>;

    /// Called once after the last handler finished.
    fn closed(&self) -> BoxFuture<'static, ()>;
}

/// A running consumer: its task and the token that stops it.
pub(crate) struct Consumer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Consumer {
    /// Prepares `source` (failing the registration if Redis refuses) and starts its loop.
    pub async fn start<S: Source>(link: &Arc<Link>, source: S, concurrency: usize) -> Result<Self, redis::RedisError> {
        source.prepare().await?;
        let connection = link.reader().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(link.clone(), source, concurrency.max(1), connection, stop.clone()));
        Ok(Self { stop, task })
    }
}

impl Registration for Consumer {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.stop.cancel();
        Box::pin(async move {
            if let Err(e) = self.task.await {
                tracing::error!(error = %e, "a Redis consumer stopped abnormally");
            }
        })
    }
}

async fn run<S: Source>(link: Arc<Link>, mut source: S, concurrency: usize, connection: MultiplexedConnection, stop: CancellationToken) {
    let mut connection = Some(connection);
    let mut reading: Option<BoxFuture<'static, redis::RedisResult<Vec<S::Item>>>> = None;
    let mut reconnecting: Option<BoxFuture<'static, Option<MultiplexedConnection>>> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut ticking: Option<BoxFuture<'static, Vec<S::Item>>> = None;
    let mut running = FuturesUnordered::new();
    let mut ticks = tokio::time::interval(source.tick_every());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let mut stopping = false;
    loop {
        if !stopping
            && reading.is_none()
            && running.len() < concurrency
            && let Some(connection) = &connection
        {
            reading = Some(source.read(connection.clone(), concurrency - running.len()));
        }
        if stopping && reading.is_none() && ticking.is_none() && running.is_empty() {
            break;
        }
        tokio::select! {
            read = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                reading = None;
                match read {
                    Ok(items) => {
                        source.advance(&items);
                        running.extend(items.into_iter().map(|item| source.handle(item)));
                    }
                    Err(e) => {
                        connection = None;
                        if !stopping {
                            // A lost connection is expected in an outage; anything else (a key of
                            // the wrong type, a group removed by hand) is worth a look.
                            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                                tracing::debug!(error = %e, "a Redis reader lost its connection; reconnecting");
                            } else {
                                tracing::warn!(error = %e, "a Redis reader failed; setting it up again");
                            }
                            backoff = FIRST_BACKOFF;
                            reconnecting = Some(reconnect(link.clone(), backoff, source.prepare()));
                        }
                    }
                }
            }
            Some(()) = running.next(), if !running.is_empty() => {}
            restored = async { reconnecting.as_mut().expect("guarded").await }, if reconnecting.is_some() => {
                reconnecting = None;
                match restored {
                    Some(restored) => connection = Some(restored),
                    None => {
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        reconnecting = Some(reconnect(link.clone(), backoff, source.prepare()));
                    }
                }
            }
            claimed = async { ticking.as_mut().expect("guarded").await }, if ticking.is_some() => {
                ticking = None;
                running.extend(claimed.into_iter().map(|item| source.handle(item)));
            }
            _ = ticks.tick(), if !stopping && ticking.is_none() && connection.is_some() => {
                ticking = Some(source.tick(concurrency.saturating_sub(running.len())));
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                reconnecting = None;
                source.closing().await;
            }
        }
    }
    source.closed().await;
}

/// The first wait before reconnecting a reader; doubled up to 1 s while Redis stays away.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// One attempt, after `backoff`, at a new reader connection with what reading needs set up
/// again (`prepare`); `None` if either failed.
fn reconnect(
    link: Arc<Link>,
    backoff: Duration,
    prepare: BoxFuture<'static, redis::RedisResult<()>>,
) -> BoxFuture<'static, Option<MultiplexedConnection>> {
    Box::pin(async move {
        tokio::time::sleep(backoff).await;
        let connection = link.reader().await.ok()?;
        match prepare.await {
            Ok(()) => Some(connection),
            Err(e) => {
                tracing::debug!(error = %e, "a Redis reader cannot set up again yet");
                None
            }
        }
    })
}
