//! `purest ps`: the services, instances, commands and subscriptions alive on a bridge, from their
//! info messages (see `purest_core::presence`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use purest::config::Settings;
use purest::prelude::App;
use purest::presence::{Function, Instance, Presence, State};

use crate::CliError;

/// What `purest ps` takes.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// The bridge to look at (`nats://host:port`, `amqp://user:password@host:5672/%2f`,
    /// `mqtt://host:1883`); default: `PUREST_BRIDGE` or `bridge` in `purest.toml`, read as the
    /// app reads them (with its `[nats]`, `[amqp]`, `[mqtt]` or `[redis]` settings).
    #[arg(long)]
    bridge: Option<String>,
    /// How long to collect answers, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// Print the instances as JSON.
    #[arg(long)]
    json: bool,
    /// Keep running and print each instance as it starts, changes or stops (Ctrl-C ends).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

/// Connects to the configured bridge and lists (or watches) what runs on it.
pub fn run(args: &PsArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Ps(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let mut settings = Settings::load().map_err(|e| CliError::Ps(e.to_string()))?;
        if let Some(url) = &args.bridge {
            settings.bridge = Some(url.clone());
        }
        match settings.bridge.as_deref() {
            None | Some("memory") => {
                return Err(CliError::Ps(
                    "purest ps looks at a broker, and none is configured: pass --bridge nats://127.0.0.1:4222 or set PUREST_BRIDGE".into(),
                ));
            }
            Some(_) => {}
        }
        // Only the bridge: the apps being looked at run their own services.
        settings.services = None;
        let app = App::new()
            .configure_with(&settings)
            .map_err(|e| CliError::Ps(e.to_string()))?
            .start()
            .await
            .map_err(|e| CliError::Ps(e.to_string()))?;
        let bridge = app.bridge().clone();
        let result = if args.watch {
            watch(bridge).await
        } else {
            let instances = Presence::list(bridge, Duration::from_millis(args.wait_ms))
                .await
                .map_err(|e| CliError::Ps(e.to_string()));
            instances.map(|instances| {
                let text = if args.json {
                    serde_json::to_string_pretty(&instances).unwrap_or_default()
                } else {
                    table(&instances)
                };
                println!("{}", text.trim_end());
            })
        };
        app.shutdown().await;
        result
    })
}

/// Prints each instance whenever what is known of it changes, until Ctrl-C.
async fn watch(bridge: std::sync::Arc<dyn purest::Bridge>) -> Result<(), CliError> {
    let mut presence = Presence::watch(bridge).await.map_err(|e| CliError::Ps(e.to_string()))?;
    presence.discover().await.map_err(|e| CliError::Ps(e.to_string()))?;
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            instance = presence.next() => {
                let Some(instance) = instance else { break };
                let line = format!(
                    "{}/{} {} {} ({})",
                    instance.service,
                    instance.version,
                    instance.instance_id,
                    instance.state,
                    functions_summary(&instance)
                );
                if shown.insert(instance.instance_id.clone(), line.clone()).as_ref() != Some(&line) {
                    println!("{line}");
                }
            }
        }
    }
    presence.close().await;
    Ok(())
}

fn functions_summary(instance: &Instance) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(instance.commands.len(), "command"),
        plural(instance.subscriptions.len(), "subscription")
    )
}

/// Services with their instances and functions, then every instance.
fn table(instances: &[Instance]) -> String {
    if instances.is_empty() {
        return "no services answered: are they running on this bridge? (PURISTA services do not answer; they show in --watch when they start)".into();
    }
    let mut services: BTreeMap<(String, String), Vec<&Instance>> = BTreeMap::new();
    for instance in instances {
        services
            .entry((instance.service.clone(), instance.version.clone()))
            .or_default()
            .push(instance);
    }
    let mut rows: Vec<[String; 3]> = Vec::new();
    for ((name, version), copies) in &services {
        let ready = copies.iter().filter(|i| i.state == State::Ready).count();
        let count = format!("{} ({ready} ready)", copies.len());
        let mut functions: BTreeMap<(u8, &str), String> = BTreeMap::new();
        for copy in copies {
            for command in &copy.commands {
                functions.insert((0, &command.name), describe("command", command, "→"));
            }
            for subscription in &copy.subscriptions {
                functions.insert((1, &subscription.name), describe("subscription", subscription, "on"));
            }
        }
        let mut functions = functions.into_values();
        rows.push([format!("{name}/{version}"), count, functions.next().unwrap_or_default()]);
        rows.extend(functions.map(|f| [String::new(), String::new(), f]));
    }
    let mut out = render(["SERVICE", "INSTANCES", "COMMANDS AND SUBSCRIPTIONS"], &rows);
    out.push('\n');
    let rows: Vec<[String; 3]> = instances
        .iter()
        .map(|i| [i.instance_id.clone(), format!("{}/{}", i.service, i.version), i.state.to_string()])
        .collect();
    out.push_str(&render(["INSTANCE", "SERVICE", "STATE"], &rows));
    out
}

fn describe(kind: &str, function: &Function, event_word: &str) -> String {
    let mut text = format!("{kind} {}", function.name);
    if let Some(http) = &function.http {
        let _ = write!(text, "  {http}");
    }
    if let Some(event) = &function.event {
        let _ = write!(text, "  {event_word} {event}");
    }
    if function.durable {
        text.push_str("  (durable)");
    }
    text
}

fn render(header: [&str; 3], rows: &[[String; 3]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 3]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {}",
            cells[0],
            cells[1],
            cells[2],
            w0 = widths[0],
            w1 = widths[1]
        );
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2]]);
    }
    out
}
