//! Verification keys from a JWKS URL (RFC 7517), as identity providers publish them: fetched on
//! first use, kept for [`MAX_AGE`], and fetched again when a token names a key id the set does not
//! have (a rotated key) — at most once per cooldown, so tokens with made-up key ids cannot make the
//! gateway hammer the provider. A failed fetch keeps the keys there are.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::auth::AuthError;

/// How long a fetched key set is used before it is fetched again.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Shortest time between two fetches caused by unknown key ids, unless configured.
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set accepted.
const MAX_BYTES: usize = 256 * 1024;

/// The algorithms keys from a set may verify.
pub(crate) const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// A key and the one algorithm it verifies.
pub(crate) struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// The keys of one JWKS URL.
pub(crate) struct KeySet {
    url: hyper::Uri,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cooldown: Duration,
    fetched: RwLock<Fetched>,
    /// One fetch at a time; callers arriving meanwhile use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Fetched {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// The set's only key, when it has exactly one: tokens without a key id may use it.
    only: Option<Arc<VerifyingKey>>,
    at: Option<Instant>,
    attempted: Option<Instant>,
}

impl KeySet {
    /// A set fetched from `url` (`https://…`, or `http://` on a trusted network).
    pub fn new(url: &str, cooldown: Duration) -> Result<Self, AuthError> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|_| AuthError::InvalidKey("the JWKS URL is not a URL".to_owned()))?;
        if !matches!(url.scheme_str(), Some("https" | "http")) || url.host().is_none() {
            return Err(AuthError::InvalidKey(
                "the JWKS URL must be an http:// or https:// URL with a host".to_owned(),
            ));
        }
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = match tls.with_provider_and_native_roots(rustls::crypto::ring::default_provider()) {
            Ok(tls) => tls,
            Err(error) => {
                tracing::warn!(%error, "no trusted root certificates found: JWKS over https will fail");
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                        .with_safe_default_protocol_versions()
                        .map_err(|e| AuthError::InvalidKey(format!("TLS set-up failed: {e}")))?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        };
        let connector = tls.https_or_http().enable_http1().build();
        Ok(Self {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cooldown,
            fetched: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The same URL and client with another cooldown (nothing fetched yet is lost: the set is
    /// only built, not used, while the authenticator is configured).
    pub fn with_cooldown(&self, cooldown: Duration) -> Self {
        Self {
            url: self.url.clone(),
            client: self.client.clone(),
            cooldown,
            fetched: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The URL, for logs.
    pub fn url(&self) -> &hyper::Uri {
        &self.url
    }

    /// The key that must have signed `token`, by the `kid` of its header.
    pub async fn key_for(&self, token: &str) -> Result<Arc<VerifyingKey>, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::from_jwt(&e))?;
        let kid = header.kid.as_deref();
        if let Some(key) = self.lookup(kid, false) {
            return Ok(key);
        }
        self.refresh().await;
        self.lookup(kid, true).ok_or_else(|| match kid {
            Some(_) => AuthError::UnknownSigningKey,
            None => AuthError::Malformed("the token names no key id (`kid`) and the key set has several keys".to_owned()),
        })
    }

    /// The key for `kid`; a set older than [`MAX_AGE`] only when `stale_ok`.
    fn lookup(&self, kid: Option<&str>, stale_ok: bool) -> Option<Arc<VerifyingKey>> {
        let fetched = self.fetched.read().expect("JWKS lock");
        let fresh = fetched.at.is_some_and(|at| at.elapsed() < MAX_AGE);
        if !fresh && !stale_ok {
            return None;
        }
        match kid {
            Some(kid) => fetched.keys.get(kid).cloned(),
            None => fetched.only.clone(),
        }
    }

    /// Fetches the set again unless that was tried within the cooldown.
    async fn refresh(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        let attempted = self.fetched.read().expect("JWKS lock").attempted;
        if attempted.is_some_and(|at| at.elapsed() < self.cooldown) {
            return;
        }
        self.fetched.write().expect("JWKS lock").attempted = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()))
        {
            Ok((keys, only)) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "JWKS fetched");
                let mut fetched = self.fetched.write().expect("JWKS lock");
                fetched.keys = keys;
                fetched.only = only;
                fetched.at = Some(Instant::now());
            }
            Err(reason) => tracing::warn!(url = %self.url, %reason, "cannot fetch the JWKS; keeping the keys fetched before"),
        }
    }

    /// Downloads and reads the set: keys by id, and the only key when there is one.
    async fn fetch(&self) -> Result<(HashMap<String, Arc<VerifyingKey>>, Option<Arc<VerifyingKey>>), String> {
        let response = self.client.get(self.url.clone()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        let mut usable = Vec::new();
        for jwk in &set.keys {
            let Some(algorithm) = algorithm_of(jwk) else {
                tracing::debug!(kid = ?jwk.common.key_id, "JWKS key skipped: not an RS256 or ES256 key");
                continue;
            };
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => Arc::new(VerifyingKey { key, algorithm }),
                Err(error) => {
                    tracing::warn!(kid = ?jwk.common.key_id, %error, "JWKS key skipped: unusable");
                    continue;
                }
            };
            if let Some(kid) = &jwk.common.key_id {
                keys.insert(kid.clone(), key.clone());
            }
            usable.push(key);
        }
        let only = (usable.len() == 1).then(|| usable.remove(0));
        Ok((keys, only))
    }
}

/// The algorithm a key verifies: its `alg`, else what its type implies (RSA → RS256, P-256 →
/// ES256). `None` for keys of other kinds, which are skipped.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(Algorithm::ES256),
        Some(_) => None,
    }
}
