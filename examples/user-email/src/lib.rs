//! The canonical purest example: a `user` service that registers users and an `email` service
//! that welcomes them, connected only by the `newUserRegistered` event. Both sides name the
//! command and the event by typed references ([`REGISTER_NEW_USER`], [`USER_REGISTERED`]), so a
//! payload that does not fit is a compile error.
//!
//! ```
//! use purest::prelude::*;
//! use user_email::{email_service, user_service, MailLog, NewUser, REGISTER_NEW_USER};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let mails = MailLog::default();
//! let app = App::new().service(user_service()).service(email_service(mails.sender(0))).start().await?;
//! let user = app
//!     .client()
//!     .invoke(REGISTER_NEW_USER, NewUser { name: "Ann".into(), email: "ann@example.com".into() })
//!     .await?;
//! assert_eq!(user.email, "ann@example.com");
//! assert_eq!(mails.wait_for_mail(std::time::Duration::from_secs(5)).await.unwrap().to, "ann@example.com");
//! app.shutdown().await;
//! # Ok::<_, purest::Error>(()) }).unwrap();
//! ```

mod email;
mod user;

pub use email::{DeadLetterView, EMAIL_DEAD_LETTERS, FlakySender, MailLog, MailSender, SendError, WelcomeMail, email_service};
pub use user::{
    CallLog, Caller, GET_USER, GetUser, NewUser, REGISTER_NEW_USER, USER_REGISTERED, User, UserStore, user_service, user_service_with,
};
