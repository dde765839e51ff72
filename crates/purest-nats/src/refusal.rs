//! What the server refused this connection: nats-server answers a publish or subscription its
//! user has no permission for with `-ERR 'Permissions Violation for Publish to "<subject>"'` (or
//! `… for Subscription to "<subject>"`, with ` using queue "<group>"` for a queue subscription),
//! keeps the connection, and drops the message. async-nats hands that line to the event callback
//! as a server error, separately from the request that caused it; a request whose publish was
//! refused gets no reply at all.
//!
//! The bridge turns those lines into prompt errors: the callback records each refusal here, and
//! an operation that may be refused (an invoke, an event's publish, a JetStream API call) looks
//! for a refusal of its own subject while it runs — every [`CHECK_EVERY`] while it waits, so an
//! operation that ends sooner (nearly all) costs one atomic load and no lock; a start-up
//! subscription watches the `watch` channel instead. State is bounded: the last [`RECENT`]
//! refusals, and no list of waiters. A precise mapping from a
//! refusal to the operation that caused it is impossible — the server names the subject, nothing
//! else — so every operation in flight on a refused subject fails; that is right, since the
//! server refuses every publish on that subject from this connection. If more than [`RECENT`]
//! refusals arrive while an operation runs, or async-nats drops the event (its event queue is
//! bounded and full), the operation may miss its refusal and ends at its deadline, as without
//! this.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Refusals kept for operations in flight to find theirs.
pub(crate) const RECENT: usize = 32;

/// How often an operation still waiting looks for a refusal of its own. The server refuses within
/// a round trip of the publish, so a refused call ends about this long after it began.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A message published on the subject.
    Publish,
    /// A subscription to the subject.
    Subscribe,
}

/// One refusal, as the server reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Its place in the order of refusals on this connection (from 1).
    seq: u64,
    pub(crate) kind: Kind,
    pub(crate) subject: Arc<str>,
    /// The queue group of a refused queue subscription.
    pub(crate) queue: Option<Arc<str>>,
}

impl Refusal {
    /// Reads a server error line (as async-nats gives it, without the quotes around it); `None`
    /// when it is not a permissions violation.
    pub(crate) fn parse(error: &str) -> Option<(Kind, Arc<str>, Option<Arc<str>>)> {
        let (kind, rest) = if let Some(rest) = error.strip_prefix("Permissions Violation for Publish to ") {
            (Kind::Publish, rest)
        } else if let Some(rest) = error.strip_prefix("Permissions Violation for Subscription to ") {
            (Kind::Subscribe, rest)
        } else {
            return None;
        };
        let (subject, rest) = quoted(rest)?;
        let queue = rest.strip_prefix(" using queue ").and_then(quoted).map(|(queue, _)| queue.into());
        Some((kind, subject.into(), queue))
    }

    /// What the subject (and queue group) look like in a `permissions` block of nats-server.
    pub(crate) fn permission(&self) -> String {
        match &self.queue {
            Some(queue) => format!("\"{} {queue}\"", self.subject),
            None => format!("\"{}\"", self.subject),
        }
    }
}

/// `"text"` at the start of `s`: the text and what follows.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('"')?;
    let end = s.find('"')?;
    Some((&s[..end], &s[end + 1..]))
}

/// The most recent refusals and how many there were.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    count: u64,
    refusals: VecDeque<Refusal>,
}

/// The refusals of one connection, shared by the event callback and the bridge.
#[derive(Clone)]
pub(crate) struct Refusals(Arc<Shared>);

struct Shared {
    recent: watch::Sender<Recent>,
    /// How many there were, readable without a lock.
    count: AtomicU64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals(Arc::new(Shared {
            recent: watch::Sender::new(Recent::default()),
            count: AtomicU64::new(0),
        }))
    }
}

impl Refusals {
    /// How many refusals there were so far: a mark to look for later ones with
    /// [`Refusals::since`].
    pub(crate) fn mark(&self) -> u64 {
        self.0.count.load(Ordering::Acquire)
    }

    /// A refusal recorded after `mark` that `matches`; no lock is taken when there is none.
    pub(crate) fn since(&self, mark: u64, matches: impl Fn(&Refusal) -> bool) -> Option<Refusal> {
        if self.mark() == mark {
            return None;
        }
        let recent = self.0.recent.borrow();
        recent
            .refusals
            .iter()
            .find(|refusal| refusal.seq > mark && matches(refusal))
            .cloned()
    }

    /// Records a refusal and wakes the watches.
    pub(crate) fn record(&self, kind: Kind, subject: Arc<str>, queue: Option<Arc<str>>) {
        let count = &self.0.count;
        self.0.recent.send_modify(|recent| {
            recent.count += 1;
            if recent.refusals.len() == RECENT {
                recent.refusals.pop_front();
            }
            recent.refusals.push_back(Refusal {
                seq: recent.count,
                kind,
                subject,
                queue,
            });
            count.store(recent.count, Ordering::Release);
        });
    }

    /// Starts watching: refusals recorded from now on are seen by [`Watch::refused`] and
    /// [`Watch::find`]. Take it before the operation that may be refused.
    pub(crate) fn watch(&self) -> Watch {
        let receiver = self.0.recent.subscribe();
        let since = receiver.borrow().count;
        Watch { receiver, since }
    }
}

/// Refusals since a point in time.
pub(crate) struct Watch {
    receiver: watch::Receiver<Recent>,
    since: u64,
}

impl Watch {
    /// A refusal recorded since the watch began that `matches`, if one is known now.
    pub(crate) fn find(&mut self, matches: impl Fn(&Refusal) -> bool) -> Option<Refusal> {
        let recent = self.receiver.borrow_and_update();
        recent
            .refusals
            .iter()
            .find(|refusal| refusal.seq > self.since && matches(refusal))
            .cloned()
    }

    /// Resolves with the first refusal that `matches`; never, if there is none.
    pub(crate) async fn refused(&mut self, matches: impl Fn(&Refusal) -> bool) -> Refusal {
        loop {
            if let Some(refusal) = self.find(&matches) {
                return refusal;
            }
            if self.receiver.changed().await.is_err() {
                // The bridge is gone; nothing more will be refused.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_violation_lines() {
        assert_eq!(
            Refusal::parse(r#"Permissions Violation for Publish to "purista.command.a.b""#),
            Some((Kind::Publish, "purista.command.a.b".into(), None))
        );
        assert_eq!(
            Refusal::parse(r#"Permissions Violation for Subscription to "purista.command.*.x" using queue "PURISTA_QUEUE_X""#),
            Some((Kind::Subscribe, "purista.command.*.x".into(), Some("PURISTA_QUEUE_X".into())))
        );
        assert_eq!(Refusal::parse("Authorization Violation"), None);
        assert_eq!(Refusal::parse("Permissions Violation for Publish to unquoted"), None);
    }

    #[tokio::test]
    async fn an_operation_finds_only_refusals_of_its_subject_made_while_it_runs() {
        let refusals = Refusals::default();
        refusals.record(Kind::Publish, "a".into(), None);
        let mut watch = refusals.watch();
        assert_eq!(watch.find(|r| &*r.subject == "a"), None, "recorded before the watch began");
        let waiting = tokio::spawn(async move { watch.refused(|r| &*r.subject == "a").await });
        refusals.record(Kind::Publish, "b".into(), None);
        refusals.record(Kind::Publish, "a".into(), None);
        let refusal = waiting.await.unwrap();
        assert_eq!((refusal.kind, &*refusal.subject, refusal.seq), (Kind::Publish, "a", 3));
    }

    #[test]
    fn a_mark_finds_later_refusals_only() {
        let refusals = Refusals::default();
        refusals.record(Kind::Publish, "a".into(), None);
        let mark = refusals.mark();
        assert_eq!(refusals.since(mark, |_| true), None);
        refusals.record(Kind::Publish, "b".into(), None);
        assert_eq!(refusals.since(mark, |r| &*r.subject == "a"), None, "recorded before the mark");
        assert_eq!(refusals.since(mark, |r| &*r.subject == "b").map(|r| r.seq), Some(2));
    }

    #[test]
    fn keeps_only_the_most_recent() {
        let refusals = Refusals::default();
        let mut watch = refusals.watch();
        for i in 0..RECENT + 5 {
            refusals.record(Kind::Publish, i.to_string().into(), None);
        }
        assert_eq!(refusals.0.recent.borrow().refusals.len(), RECENT);
        assert_eq!(watch.find(|r| &*r.subject == "0"), None, "pushed out");
        assert!(watch.find(|r| *r.subject == *(RECENT + 4).to_string()).is_some());
    }
}
