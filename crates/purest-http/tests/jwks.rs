//! Bearer JWTs verified with keys from a JWKS served on loopback (RS256 and ES256, picked by
//! `kid`, fetched again for a rotated key, at most once per cooldown for unknown ones), and ES256
//! with a fixed public key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use purest_http::{AuthError, Authenticator, Identity, JwtAuthenticator};
use serde_json::{Value, json};

const RSA_PRIVATE: &str = include_str!("keys/test-only-rsa.pem");
const RSA_PUBLIC: &str = include_str!("keys/test-only-rsa.pub.pem");
const EC_PRIVATE: &str = include_str!("keys/test-only-ec.pem");
const EC_PUBLIC: &str = include_str!("keys/test-only-ec.pub.pem");

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}

/// The public half of `key` as a JWK with id `kid`.
fn jwk(key: &EncodingKey, algorithm: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn token(key: &EncodingKey, algorithm: Algorithm, kid: Option<&str>, subject: &str) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    encode(&header, &json!({"sub": subject, "exp": exp}), key).unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

/// A JWKS endpoint on loopback whose set the test changes, counting the fetches.
struct JwksServer {
    url: String,
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> Self {
        let set = Arc::new(Mutex::new(serde_json::to_value(JwkSet { keys }).unwrap()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let router = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(|State((set, fetches)): State<(Arc<Mutex<Value>>, Arc<AtomicUsize>)>| async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(set.lock().unwrap().clone())
                }),
            )
            .with_state((set.clone(), fetches.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, set, fetches }
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.set.lock().unwrap() = serde_json::to_value(JwkSet { keys }).unwrap();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn check(authenticator: &JwtAuthenticator, token: &str) -> Result<Option<Identity>, AuthError> {
    authenticator.authenticate(&bearer(token)).await
}

#[tokio::test]
async fn tokens_are_verified_with_the_jwks_key_their_kid_names() {
    let server = JwksServer::start(vec![jwk(&rsa(), Algorithm::RS256, "rsa-1"), jwk(&ec(), Algorithm::ES256, "ec-1")]).await;
    let jwks = JwtAuthenticator::jwks(&server.url).unwrap().jwks_cooldown(Duration::ZERO);
    let ann = check(&jwks, &token(&rsa(), Algorithm::RS256, Some("rsa-1"), "ann")).await.unwrap();
    assert_eq!(ann, Some(Identity::new("ann")));
    let bob = check(&jwks, &token(&ec(), Algorithm::ES256, Some("ec-1"), "bob")).await.unwrap();
    assert_eq!(bob, Some(Identity::new("bob")));
    assert_eq!(server.fetches(), 1, "the set is fetched once and kept");

    // A token whose header claims another algorithm than its key's is refused (no confusion).
    let confused = check(&jwks, &token(&ec(), Algorithm::ES256, Some("rsa-1"), "eve")).await;
    assert!(matches!(confused, Err(AuthError::WrongAlgorithm)), "{confused:?}");
    let forged_hmac = token(
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        Algorithm::HS256,
        Some("rsa-1"),
        "eve",
    );
    assert!(
        check(&jwks, &forged_hmac).await.is_err(),
        "an HS256 token signed with the public key is refused"
    );
    let wrong_key = check(&jwks, &token(&rsa(), Algorithm::RS256, Some("ec-1"), "eve")).await;
    assert!(wrong_key.is_err(), "{wrong_key:?}");

    // The provider rotates its EC key: the new kid makes the set be fetched again.
    let rotated = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    server.publish(vec![
        jwk(&rsa(), Algorithm::RS256, "rsa-1"),
        jwk(&rotated, Algorithm::ES256, "ec-2"),
    ]);
    let carol = check(&jwks, &token(&rotated, Algorithm::ES256, Some("ec-2"), "carol"))
        .await
        .unwrap();
    assert_eq!(carol, Some(Identity::new("carol")));
    assert_eq!(server.fetches(), 2);
    let unknown = check(&jwks, &token(&rsa(), Algorithm::RS256, Some("nobody"), "eve")).await;
    assert!(matches!(unknown, Err(AuthError::UnknownSigningKey)), "{unknown:?}");
}

#[tokio::test]
async fn unknown_key_ids_fetch_the_set_at_most_once_per_cooldown() {
    let server = JwksServer::start(vec![jwk(&rsa(), Algorithm::RS256, "rsa-1")]).await;
    let jwks = JwtAuthenticator::jwks(&server.url).unwrap();
    assert!(check(&jwks, &token(&rsa(), Algorithm::RS256, Some("rsa-1"), "ann")).await.is_ok());
    for n in 0..20 {
        let made_up = token(&rsa(), Algorithm::RS256, Some(&format!("made-up-{n}")), "eve");
        assert!(matches!(check(&jwks, &made_up).await, Err(AuthError::UnknownSigningKey)));
    }
    assert_eq!(server.fetches(), 1, "made-up key ids within the 5 s cooldown fetch nothing");
}

#[tokio::test]
async fn a_token_without_kid_uses_the_only_key_of_the_set() {
    let server = JwksServer::start(vec![jwk(&ec(), Algorithm::ES256, "ec-1")]).await;
    let jwks = JwtAuthenticator::jwks(&server.url).unwrap();
    let ann = check(&jwks, &token(&ec(), Algorithm::ES256, None, "ann")).await.unwrap();
    assert_eq!(ann, Some(Identity::new("ann")));

    server.publish(vec![jwk(&ec(), Algorithm::ES256, "ec-1"), jwk(&rsa(), Algorithm::RS256, "rsa-1")]);
    let several = JwtAuthenticator::jwks(&server.url).unwrap();
    let refused = check(&several, &token(&ec(), Algorithm::ES256, None, "ann")).await;
    assert!(matches!(refused, Err(AuthError::Malformed(_))), "{refused:?}");
}

#[tokio::test]
async fn an_unreachable_jwks_refuses_tokens_and_bad_urls_are_refused_up_front() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);
    let jwks = JwtAuthenticator::jwks(&url).unwrap();
    assert!(check(&jwks, &token(&rsa(), Algorithm::RS256, Some("rsa-1"), "ann")).await.is_err());
    for bad in ["", "not a url", "ftp://example.com/jwks.json", "/jwks.json"] {
        assert!(matches!(JwtAuthenticator::jwks(bad), Err(AuthError::InvalidKey(_))), "{bad:?}");
    }
}

#[tokio::test]
async fn es256_tokens_are_verified_with_a_public_key_pem() {
    let es256 = JwtAuthenticator::es256_pem(EC_PUBLIC.as_bytes()).unwrap();
    let ann = check(&es256, &token(&ec(), Algorithm::ES256, None, "ann")).await.unwrap();
    assert_eq!(ann, Some(Identity::new("ann")));
    let rs = check(&es256, &token(&rsa(), Algorithm::RS256, None, "eve")).await;
    assert!(matches!(rs, Err(AuthError::WrongAlgorithm)), "{rs:?}");
    assert!(
        JwtAuthenticator::es256_pem(EC_PRIVATE.as_bytes()).is_err(),
        "a private key is refused"
    );
    assert!(
        JwtAuthenticator::es256_pem(RSA_PUBLIC.as_bytes()).is_err(),
        "an RSA key is not a P-256 key"
    );
}
