//! Certificates for the TLS tests, made with the `openssl` command: a CA of the test's own and a
//! certificate for `localhost` and 127.0.0.1 signed by it, valid for a day.

use std::path::Path;

/// Writes `ca.pem`, `cert.pem` and `key.pem` (and the CA's key) into `dir`; false (the test
/// skips) when `openssl` is not installed, unless `PUREST_REQUIRE_BROKERS=1`.
pub fn make_certificates(dir: &Path) -> bool {
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write san.ext");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=purest test CA",
        ],
    ) && openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=localhost",
        ],
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    )
}

/// Runs `openssl` with `args` in `dir`; false when it is not installed.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    match std::process::Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            true
        }
        Err(e) => {
            assert_ne!(
                std::env::var("PUREST_REQUIRE_BROKERS").as_deref(),
                Ok("1"),
                "openssl is needed to make the TLS test's certificates: {e}"
            );
            eprintln!("skipping: no openssl to make certificates ({e})");
            false
        }
    }
}
