//! `purest graph`: the topology as Mermaid or DOT. Commands are boxes, subscriptions rounded,
//! events stadiums; solid arrows carry events, dotted ones invokes.

use std::fmt::Write;

use crate::topology::{Emission, Handler, Topology, sanitize};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Mermaid flowchart (renders on GitHub).
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

fn event_id(event: &str) -> String {
    format!("event_{}", sanitize(event))
}

fn label(handler: &Handler) -> String {
    format!("{}/{} {}", handler.service, handler.version, handler.name)
}

fn emission_label(how: Emission) -> &'static str {
    match how {
        Emission::Success => "success",
        Emission::Output => "emits",
        Emission::Declared => "may emit",
        Emission::DeadLetter => "dead letters",
    }
}

/// Draws `topology`.
pub fn render(topology: &Topology, format: Format) -> String {
    match format {
        Format::Mermaid => mermaid(topology),
        Format::Dot => dot(topology),
    }
}

fn mermaid(topology: &Topology) -> String {
    let mut out = String::from("flowchart LR\n");
    for (handler, _) in &topology.handlers {
        let (open, close) = if handler.subscription { ("(", ")") } else { ("[", "]") };
        let _ = writeln!(out, "  {}{open}\"{}\"{close}", handler.id(), label(handler));
    }
    for event in topology.events() {
        let _ = writeln!(out, "  {}([\"{event}\"])", event_id(&event));
    }
    for (producer, event, how) in &topology.emits {
        let _ = writeln!(out, "  {} -->|{}| {}", producer.id(), emission_label(*how), event_id(event));
    }
    for (event, consumer) in &topology.consumes {
        let _ = writeln!(out, "  {} --> {}", event_id(event), consumer.id());
    }
    for (caller, target) in &topology.invokes {
        let target_id = topology.find(target).map_or_else(|| sanitize(target), Handler::id);
        let _ = writeln!(out, "  {} -.->|invokes| {target_id}", caller.id());
    }
    out
}

fn dot(topology: &Topology) -> String {
    let mut out = String::from("digraph purest {\n  rankdir=LR;\n");
    for (handler, _) in &topology.handlers {
        let shape = if handler.subscription { "box, style=rounded" } else { "box" };
        let _ = writeln!(out, "  {} [label=\"{}\", shape={shape}];", handler.id(), label(handler));
    }
    for event in topology.events() {
        let _ = writeln!(out, "  {} [label=\"{event}\", shape=ellipse];", event_id(&event));
    }
    for (producer, event, how) in &topology.emits {
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\"];",
            producer.id(),
            event_id(event),
            emission_label(*how)
        );
    }
    for (event, consumer) in &topology.consumes {
        let _ = writeln!(out, "  {} -> {};", event_id(event), consumer.id());
    }
    for (caller, target) in &topology.invokes {
        let target_id = topology.find(target).map_or_else(|| sanitize(target), Handler::id);
        let _ = writeln!(out, "  {} -> {target_id} [label=\"invokes\", style=dashed];", caller.id());
    }
    out.push_str("}\n");
    out
}
