//! The `email` service: welcomes every new user by mail, durably.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purest::layers::Timeout;
use purest::prelude::*;
use tokio::sync::Notify;

use crate::user::{USER_REGISTERED, User};

/// Mails given up for good (after the retries of `sendWelcomeMail`).
pub const EMAIL_DEAD_LETTERS: &str = "email.dlq";

/// A mail as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeMail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Text body.
    pub body: String,
}

impl WelcomeMail {
    /// The mail between `--- welcome mail ---` lines, as the example prints it.
    pub fn framed(&self) -> String {
        format!("--- welcome mail ---\n{self}\n--------------------")
    }
}

impl fmt::Display for WelcomeMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "To: {}\nSubject: {}\n\n{}", self.to, self.subject, self.body)
    }
}

/// Why a mail could not be sent.
#[derive(Debug, Clone)]
pub struct SendError(pub String);

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mail not sent: {}", self.0)
    }
}

impl std::error::Error for SendError {}

/// Sends mails. Swap in SMTP or an API client in a real app.
pub trait MailSender: Send + Sync + 'static {
    /// Sends one mail.
    fn send(&self, mail: WelcomeMail) -> Result<(), SendError>;
}

/// The example's sender: keeps each mail, so callers can wait for it, and prints it to stdout
/// when made with [`MailLog::printing`].
#[derive(Clone, Default)]
pub struct MailLog {
    sent: Arc<Mutex<Vec<WelcomeMail>>>,
    changed: Arc<Notify>,
    print: bool,
}

impl MailLog {
    /// A log that also prints each mail as it is sent (what `--serve` shows).
    pub fn printing() -> Self {
        MailLog {
            print: true,
            ..MailLog::default()
        }
    }

    /// A sender writing to this log that fails its first `fail_first` attempts.
    pub fn sender(&self, fail_first: u32) -> Arc<dyn MailSender> {
        Arc::new(FlakySender {
            inner: self.clone(),
            failures_left: AtomicU32::new(fail_first),
        })
    }

    /// Every mail sent so far.
    pub fn sent(&self) -> Vec<WelcomeMail> {
        self.sent.lock().expect("mail log lock").clone()
    }

    /// Waits for the first mail, at most `timeout`.
    pub async fn wait_for_mail(&self, timeout: Duration) -> Option<WelcomeMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Some(mail) = self.sent().into_iter().next() {
                return Some(mail);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Wakes waiters (used when a mail is given up for good).
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }
}

impl MailSender for MailLog {
    fn send(&self, mail: WelcomeMail) -> Result<(), SendError> {
        if self.print {
            println!("{}", mail.framed());
        }
        tracing::info!(to = %mail.to, "welcome mail sent");
        self.sent.lock().expect("mail log lock").push(mail);
        self.changed.notify_waiters();
        Ok(())
    }
}

/// Fails its first attempts (to show retries and dead-lettering), then delegates.
pub struct FlakySender {
    inner: MailLog,
    failures_left: AtomicU32,
}

impl MailSender for FlakySender {
    fn send(&self, mail: WelcomeMail) -> Result<(), SendError> {
        let failing = self
            .failures_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(SendError(format!("simulated outage of the mail server (sending to {})", mail.to)));
        }
        self.inner.send(mail)
    }
}

async fn send_welcome_mail(State(sender): State<Arc<dyn MailSender>>, Payload(user): Payload<User>) -> Result<(), Error> {
    let mail = WelcomeMail {
        to: user.email.clone(),
        subject: format!("Welcome, {}!", user.name),
        body: format!("Hello {},\n\nyour account {} is ready.\n\n— the purest team", user.name, user.id),
    };
    sender.send(mail)?;
    Ok(())
}

async fn report_dead_letter(Payload(letter): Payload<DeadLetterView>) -> Result<(), HandledError> {
    tracing::warn!(subscription = %letter.subscription, attempts = letter.attempts, reason = %letter.reason, "a welcome mail was given up");
    Ok(())
}

/// The parts of a dead letter (`purest::DeadLetter`) the example shows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Validate)]
#[garde(allow_unvalidated)]
pub struct DeadLetterView {
    /// `service/version/subscription` that gave up.
    pub subscription: String,
    /// The last failure.
    pub reason: String,
    /// How many times the message was delivered.
    pub attempts: u32,
}

impl DeadLetterView {
    /// The dead letter between `--- dead letter ---` lines, as the example prints it.
    pub fn framed(&self) -> String {
        format!(
            "--- dead letter ---\n{} gave up after {} attempts: {}\n-------------------",
            self.subscription, self.attempts, self.reason
        )
    }
}

/// Service `email`, version 1, sending through `sender`.
pub fn email_service(sender: Arc<dyn MailSender>) -> Service {
    Service::new("email", "1")
        .description("Welcomes new users by mail")
        .state(sender)
        .subscription(
            Subscription::on(USER_REGISTERED, "sendWelcomeMail", send_welcome_mail)
                .description("Sends the welcome mail for every registered user")
                .durable()
                // A mail server that hangs counts as a failed attempt (504), retried like the rest.
                .layer(Timeout::new(Duration::from_secs(10)))
                .retry(
                    Retry::exponential(4)
                        .backoff(Duration::from_millis(200))
                        .dead_letter(EMAIL_DEAD_LETTERS),
                ),
        )
        .subscription(
            Subscription::new("reportDeadLetter", report_dead_letter)
                .description("Reports mails given up for good")
                .on_event(EMAIL_DEAD_LETTERS),
        )
}
