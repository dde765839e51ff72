//! `docs/CONFIGURATION.md` is complete: every variable the configuration reads and every key each
//! section of `purest.toml` accepts (as the code's own "expected one of …" errors list them) is
//! on that page.

use purest::config::{Settings, variables};

const REFERENCE: &str = include_str!("../../../docs/CONFIGURATION.md");

/// The keys a table accepts, read from the error an unknown key gets.
fn accepted_keys(toml: &str) -> Vec<String> {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, toml.as_bytes()).unwrap();
    let error = Settings::load_from(Some(file.path()), |_| None)
        .expect_err("an unknown key is refused")
        .to_string();
    // "unknown field: found `__unknown`, expected `one of `a`, `b``; accepted: …"
    let expected = error
        .split_once("expected ")
        .and_then(|(_, rest)| rest.split(';').next())
        .unwrap_or_else(|| panic!("no list of accepted keys in: {error}"));
    expected
        .split('`')
        .filter(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_variable_is_in_the_reference() {
    for (variable, key) in variables() {
        assert!(
            REFERENCE.contains(&format!("`{variable}`")),
            "docs/CONFIGURATION.md lacks {variable} ({key})"
        );
    }
}

#[test]
fn every_key_of_every_section_is_in_the_reference() {
    let tables = [
        ("top level", "__unknown = 1\n"),
        ("[http]", "[http]\n__unknown = 1\n"),
        ("[nats]", "[nats]\n__unknown = 1\n"),
        ("[amqp]", "[amqp]\n__unknown = 1\n"),
        ("[mqtt]", "[mqtt]\n__unknown = 1\n"),
        ("[redis]", "[redis]\n__unknown = 1\n"),
        ("[log]", "[log]\n__unknown = 1\n"),
        ("[telemetry]", "[telemetry]\n__unknown = 1\n"),
        ("[service.<name>]", "[service.a]\n__unknown = 1\n"),
        (
            "[service.<name>.subscriptions.<name>]",
            "[service.a.subscriptions.b]\n__unknown = 1\n",
        ),
        ("retry", "[service.a.subscriptions.b]\nretry = { __unknown = 1 }\n"),
    ];
    let mut checked = 0;
    for (table, toml) in tables {
        let keys = accepted_keys(toml);
        assert!(!keys.is_empty(), "{table}: no keys read");
        for key in keys {
            let listed = [
                format!("`{key}`"),
                format!("`[{key}]"),
                format!(".{key}`"),
                format!(" {key}`"),
                format!("`{key}."),
                format!("[{key}"),
            ]
            .iter()
            .any(|form| REFERENCE.contains(form.as_str()));
            assert!(listed, "docs/CONFIGURATION.md lacks `{key}` of {table}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} keys checked");
}
