//! Runs the `user` and `email` services in one process. By default it registers one user, prints
//! the result and the welcome mail, and exits; with `--serve` it keeps serving until stopped.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use purest::prelude::*;
use tokio::sync::mpsc;
use user_email::{DeadLetterView, EMAIL_DEAD_LETTERS, MailLog, NewUser, REGISTER_NEW_USER, UserStore, email_service, user_service_with};

#[derive(Parser)]
#[command(about = "purest's user-email example: register a user, get a welcome mail")]
struct Args {
    /// Keep serving until SIGINT/SIGTERM instead of running the demo once.
    #[arg(long)]
    serve: bool,
    /// Name of the user the demo registers.
    #[arg(long, default_value = "Ada Lovelace")]
    name: String,
    /// Email of the user the demo registers.
    #[arg(long, default_value = "ada@example.com")]
    email: String,
    /// Make the mail sender fail its first N attempts (4 or more: the mail is dead-lettered).
    #[arg(long, default_value_t = 0)]
    fail_first: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    purest::logging::init();
    let args = Args::parse();
    // Served, each mail is printed as it goes out; the demo prints it itself, after the user.
    let mails = if args.serve { MailLog::printing() } else { MailLog::default() };
    // Users in Redis (shared by every `user` instance) when USER_EMAIL_REDIS names one.
    let store = match std::env::var("USER_EMAIL_REDIS") {
        Ok(url) => {
            let prefix = std::env::var("USER_EMAIL_REDIS_PREFIX").unwrap_or_else(|_| "user-email:".into());
            match UserStore::redis(&url, &prefix).await {
                Ok(store) => store,
                Err(error) => {
                    eprintln!("error: USER_EMAIL_REDIS: {error}");
                    return ExitCode::from(2);
                }
            }
        }
        Err(_) => UserStore::default(),
    };
    let app = App::new()
        .service(user_service_with(store))
        .service(email_service(mails.sender(args.fail_first)));
    // `purest openapi|asyncapi|graph` ask the binary to describe itself (PUREST_DESCRIBE=1).
    if app.describe_if_asked() {
        return ExitCode::SUCCESS;
    }
    if args.serve {
        return match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        };
    }
    // The demo also watches for the mail being given up, so it can stop waiting at once.
    let (gave_up_tx, mut gave_up) = mpsc::channel::<DeadLetterView>(1);
    let demo = Service::new("demo", "1")
        .state(gave_up_tx)
        .subscription(Subscription::new("watchDeadLetters", notify_dead_letter).on_event(EMAIL_DEAD_LETTERS));
    let app = match app.service(demo).configure_from_env() {
        Ok(app) => app,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let app = match app.start().await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let registered = app
        .client()
        .invoke(
            REGISTER_NEW_USER,
            NewUser {
                name: args.name,
                email: args.email,
            },
        )
        .await;
    let code = match registered {
        Ok(user) => {
            println!("registered user: {}", serde_json_line(&user));
            // Printed here, in this order, whichever service finished first.
            tokio::select! {
                mail = mails.wait_for_mail(Duration::from_secs(10)) => match mail {
                    Some(mail) => println!("{}", mail.framed()),
                    None => println!("no welcome mail within 10 s; is the email service running?"),
                },
                Some(letter) = gave_up.recv() => {
                    println!("{}", letter.framed());
                    println!("no welcome mail was sent (the dead letter above says why)");
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("registration failed: {error}");
            ExitCode::FAILURE
        }
    };
    app.shutdown().await;
    code
}

async fn notify_dead_letter(
    State(gave_up): State<mpsc::Sender<DeadLetterView>>,
    Payload(letter): Payload<DeadLetterView>,
) -> Result<(), HandledError> {
    // One is enough for the demo; a full channel already holds it.
    let _ = gave_up.try_send(letter);
    Ok(())
}

fn serde_json_line(user: &user_email::User) -> String {
    purest::serde_json::to_string(user).unwrap_or_else(|_| format!("{user:?}"))
}
