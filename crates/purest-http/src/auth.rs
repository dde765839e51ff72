//! Request authentication for the HTTP gateway: an [`Authenticator`] turns request headers into the
//! [`Identity`] put on the command envelope. Two schemes are provided, bearer JWTs ([`JwtAuthenticator`])
//! and API keys ([`ApiKeyAuthenticator`]); each also describes itself for OpenAPI and `WWW-Authenticate`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName};
use futures::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::jwks::{self, KeySet, VerifyingKey};

/// Realm named in every challenge: the gateway is one protection space.
const REALM: &str = "purest";

/// Claim read as the tenant unless [`JwtAuthenticator::tenant_claim`] says otherwise.
const DEFAULT_TENANT_CLAIM: &str = "tenant";

/// Clock skew tolerated on `exp` and `nbf` unless [`JwtAuthenticator::leeway`] says otherwise.
const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// Largest leeway honoured: more would defeat `exp`, and jsonwebtoken computes `now - leeway`, which
/// must not underflow.
const MAX_LEEWAY_SECONDS: u64 = 24 * 60 * 60;

/// HMAC keys shorter than the hash output are weaker than the algorithm (RFC 7518 §3.2).
const MIN_HS256_SECRET_BYTES: usize = 32;

/// Header carrying the API key unless [`ApiKeyAuthenticator::header`] says otherwise.
const DEFAULT_API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Who made a request: put on the command envelope as principalId / tenantId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated principal (user, service, ...): the JWT `sub`, or the owner of an API key.
    pub principal_id: String,
    /// The tenant the principal acts for, in multi-tenant deployments.
    pub tenant_id: Option<String>,
}

impl Identity {
    /// An identity without a tenant.
    pub fn new(principal_id: impl Into<String>) -> Self {
        Self {
            principal_id: principal_id.into(),
            tenant_id: None,
        }
    }

    /// The same identity, acting for `tenant_id`.
    pub fn with_tenant(self, tenant_id: impl Into<String>) -> Self {
        Self {
            tenant_id: Some(tenant_id.into()),
            ..self
        }
    }
}

/// Why credentials were refused. Display gives a short reason safe to LOG (never the token or key
/// itself, never secret material); the gateway sends callers only a generic message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token's `exp` is past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// The token's `nbf` is still in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// The token's signature does not verify with the configured key.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token names an algorithm other than the single one configured. (`alg: none` or an unknown
    /// name is not even a valid jsonwebtoken header: it is reported as [`Malformed`](Self::Malformed).)
    #[error("token algorithm is not the configured one")]
    WrongAlgorithm,
    /// The token's `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// The token's `aud` does not contain the configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A claim this gateway requires is absent or not of the required type; holds the claim name.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(String),
    /// The credentials are not well-formed; holds a description that quotes none of their content.
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The API key is not one of the configured keys.
    #[error("unknown API key")]
    UnknownKey,
    /// The configured verification key is unusable; holds what is wrong with it (never its bytes).
    #[error("invalid verification key: {0}")]
    InvalidKey(String),
    /// The token's `kid` names no key of the JWKS, also after fetching it again.
    #[error("token names a key id the JWKS does not have")]
    UnknownSigningKey,
}

impl AuthError {
    /// Maps a jsonwebtoken failure onto our reasons. Its own messages for JSON and base64 failures can
    /// quote token content, so those are replaced by a fixed description instead of being passed on.
    pub(crate) fn from_jwt(error: &jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::InvalidAlgorithmName => Self::WrongAlgorithm,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            // The names come from our own required-claim list, never from the token.
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) => Self::Malformed(format!("claim `{claim}` has an invalid format")),
            ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey => {
                Self::InvalidKey("the configured key cannot verify tokens".to_owned())
            }
            _ => Self::Malformed("not a well-formed JWT".to_owned()),
        }
    }
}

/// Reads credentials from request headers.
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)` when the request carries no credentials of this kind (so another authenticator,
    /// or a public command, may still accept it); `Err` when it carries credentials that are bad.
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<Option<Identity>, AuthError>>;

    /// The OpenAPI 3.1 security scheme: (name for components.securitySchemes, the scheme object),
    /// e.g. ("bearerAuth", {"type":"http","scheme":"bearer","bearerFormat":"JWT"}) or
    /// ("apiKey", {"type":"apiKey","in":"header","name":"x-api-key"}).
    fn security_scheme(&self) -> (String, Value);

    /// The `WWW-Authenticate` challenge for a 401, e.g. `Bearer realm="purest"`, or for API keys
    /// `ApiKey realm="purest", header="x-api-key"`. With an `error="invalid_token"` parameter when `error` is Some
    /// (RFC 6750 style) for bearer.
    fn challenge(&self, error: Option<&AuthError>) -> String;
}

/// Bearer JWT (`Authorization: Bearer <token>`): HS256 with a shared secret, RS256 or ES256 with a
/// public key, or RS256/ES256 with the keys of a JWKS URL (an identity provider's).
///
/// Only the configured algorithm is accepted (with a JWKS, the one of the key the token's `kid`
/// names). `exp` and a non-empty string `sub` are required, `nbf` is checked when present, and
/// `iss` / `aud` are enforced when [`issuer`](Self::issuer) / [`audience`](Self::audience) are set.
/// Without a configured audience, `aud` is not looked at.
pub struct JwtAuthenticator {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: String,
    leeway: u64,
    /// The checks per accepted algorithm, built once (and again by each setter), not per request.
    validations: Vec<(Algorithm, Validation)>,
}

/// Where the verification keys come from.
enum Keys {
    /// One configured key; `Err` holds why it is unusable, and every token is then refused.
    Fixed(Result<Arc<VerifyingKey>, &'static str>, Algorithm),
    /// The keys of a JWKS URL.
    Jwks(Arc<KeySet>),
}

impl JwtAuthenticator {
    /// Verifies HS256 tokens with a shared secret. An empty secret would let anyone forge tokens, so it
    /// makes the authenticator refuse every token (and logs an error); a secret shorter than 32 bytes
    /// is accepted with a warning.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        let key = if secret.is_empty() {
            tracing::error!("HS256 secret is empty: every bearer token will be refused");
            Err("the HS256 secret is empty")
        } else {
            if secret.len() < MIN_HS256_SECRET_BYTES {
                tracing::warn!(bytes = secret.len(), "HS256 secret is shorter than 32 bytes (RFC 7518 section 3.2)");
            }
            Ok(DecodingKey::from_secret(secret))
        };
        Self::with_key(Algorithm::HS256, key)
    }

    /// Verifies RS256 tokens with an RSA public key in PEM form (SPKI `PUBLIC KEY` or PKCS#1
    /// `RSA PUBLIC KEY`). Fails when the input is not such a PEM, or is a private key.
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        refuse_private_key(public_key_pem)?;
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|_| AuthError::InvalidKey("not a PEM-encoded RSA public key (`PUBLIC KEY` or `RSA PUBLIC KEY`)".to_owned()))?;
        Ok(Self::with_key(Algorithm::RS256, Ok(key)))
    }

    /// Verifies ES256 tokens with a P-256 public key in PEM form (SPKI `PUBLIC KEY`). Fails when
    /// the input is not such a PEM, or is a private key.
    pub fn es256_pem(public_key_pem: &[u8]) -> Result<Self, AuthError> {
        refuse_private_key(public_key_pem)?;
        let key = DecodingKey::from_ec_pem(public_key_pem)
            .map_err(|_| AuthError::InvalidKey("not a PEM-encoded P-256 public key (`PUBLIC KEY`)".to_owned()))?;
        Ok(Self::with_key(Algorithm::ES256, Ok(key)))
    }

    /// Verifies RS256 or ES256 tokens with the keys published at `url` (a JWKS, RFC 7517, such as
    /// `https://issuer.example/.well-known/jwks.json`), picked by the token's `kid`. The set is
    /// fetched on first use, kept for 10 minutes, and fetched again when a token names an unknown
    /// key id (a rotated key), at most once per [`jwks_cooldown`](Self::jwks_cooldown). Fails when
    /// `url` is not an `http(s)://` URL.
    pub fn jwks(url: &str) -> Result<Self, AuthError> {
        let keys = Keys::Jwks(Arc::new(KeySet::new(url, jwks::DEFAULT_COOLDOWN)?));
        Ok(Self::with_keys(keys))
    }

    /// The shortest time between two fetches of the JWKS caused by unknown key ids (default 5 s).
    /// Has no effect on an authenticator with a fixed key.
    pub fn jwks_cooldown(self, cooldown: Duration) -> Self {
        match &self.keys {
            Keys::Jwks(set) => Self {
                keys: Keys::Jwks(Arc::new(set.with_cooldown(cooldown))),
                ..self
            },
            Keys::Fixed(..) => self,
        }
    }

    /// When set, a token's `iss` must be exactly this string.
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        Self {
            issuer: Some(issuer.into()),
            ..self
        }
        .validated()
    }

    /// When set, a token's `aud` (a string or an array of strings) must contain this value; a token
    /// without `aud` is refused.
    pub fn audience(self, audience: impl Into<String>) -> Self {
        Self {
            audience: Some(audience.into()),
            ..self
        }
        .validated()
    }

    /// The string claim read into [`Identity::tenant_id`] (default `tenant`). The claim is optional;
    /// when present it must be a non-empty string.
    pub fn tenant_claim(self, claim: impl Into<String>) -> Self {
        Self {
            tenant_claim: claim.into(),
            ..self
        }
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 30; more than a day is capped
    /// to a day, with a warning).
    pub fn leeway(self, seconds: u64) -> Self {
        if seconds > MAX_LEEWAY_SECONDS {
            tracing::warn!(requested = seconds, used = MAX_LEEWAY_SECONDS, "JWT leeway capped");
        }
        Self {
            leeway: seconds.min(MAX_LEEWAY_SECONDS),
            ..self
        }
        .validated()
    }

    /// An authenticator for `algorithm` with every other setting at its default.
    fn with_key(algorithm: Algorithm, key: Result<DecodingKey, &'static str>) -> Self {
        let key = key.map(|key| Arc::new(VerifyingKey { key, algorithm }));
        Self::with_keys(Keys::Fixed(key, algorithm))
    }

    fn with_keys(keys: Keys) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
            leeway: DEFAULT_LEEWAY_SECONDS,
            validations: Vec::new(),
        }
        .validated()
    }

    /// Builds the checks of every accepted algorithm for the current settings.
    fn validated(mut self) -> Self {
        let algorithms: &[Algorithm] = match &self.keys {
            Keys::Fixed(_, algorithm) => std::slice::from_ref(algorithm),
            Keys::Jwks(_) => &jwks::ALGORITHMS,
        };
        self.validations = algorithms
            .iter()
            .map(|algorithm| (*algorithm, self.validation(*algorithm)))
            .collect();
        self
    }

    /// The jsonwebtoken checks matching this configuration, for `algorithm`.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway;
        // Off by default in jsonwebtoken; it still only applies when the token carries `nbf`.
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        // jsonwebtoken checks `iss` and `aud` only when present, so configured ones must also be required.
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // jsonwebtoken refuses every token carrying `aud` when no audience is set (RFC 7519 §4.1.3);
            // this gateway does not name itself, so it has nothing to compare `aud` with.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Checks one bearer token and reads its identity.
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let key = match &self.keys {
            Keys::Fixed(key, _) => key.clone().map_err(|reason| AuthError::InvalidKey(reason.to_owned()))?,
            Keys::Jwks(set) => set.key_for(token).await?,
        };
        let (_, validation) = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == key.algorithm)
            .ok_or(AuthError::WrongAlgorithm)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|error| AuthError::from_jwt(&error))?
            .claims;
        // jsonwebtoken also accepts an array `iss` containing the issuer; RFC 7519 makes `iss` one string.
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        let principal_id = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(Value::String(_)) => return Err(AuthError::Malformed("claim `sub` is empty".to_owned())),
            _ => return Err(AuthError::MissingClaim("sub".to_owned())),
        };
        let tenant_id = match claims.get(&self.tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(tenant)) if !tenant.is_empty() => Some(tenant.clone()),
            // Refused rather than ignored: silently dropping a tenant the issuer meant to set would let the
            // request run outside the tenant it was scoped to.
            Some(_) => {
                return Err(AuthError::Malformed(format!(
                    "claim `{}` is not a non-empty string",
                    self.tenant_claim
                )));
            }
        };
        Ok(Identity { principal_id, tenant_id })
    }
}

/// jsonwebtoken takes key bits out of a private-key PEM too, but they can verify nothing: every
/// token would then fail as a bad signature. Refused where it is a configuration error.
fn refuse_private_key(pem: &[u8]) -> Result<(), AuthError> {
    if contains(pem, b"PRIVATE KEY-----") {
        return Err(AuthError::InvalidKey("expected a public key PEM, got a private key".to_owned()));
    }
    Ok(())
}

impl fmt::Debug for JwtAuthenticator {
    // By hand so that the key can never be printed, whatever DecodingKey's own Debug does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            Keys::Fixed(_, algorithm) => format!("{algorithm:?} key"),
            Keys::Jwks(set) => format!("JWKS {}", set.url()),
        };
        f.debug_struct("JwtAuthenticator")
            .field("keys", &keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            match bearer_token(headers)? {
                Some(token) => self.verify(token).await.map(Some),
                None => Ok(None),
            }
        })
    }

    fn security_scheme(&self) -> (String, Value) {
        (
            "bearerAuth".to_owned(),
            json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
        )
    }

    fn challenge(&self, error: Option<&AuthError>) -> String {
        // RFC 6750 §3: no error code when credentials were absent; the reason itself is only logged.
        match error {
            Some(_) => format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            None => format!("Bearer realm=\"{REALM}\""),
        }
    }
}

/// The token of the request's `Bearer` credentials (scheme matched case-insensitively), `Ok(None)` when
/// no `Authorization` header uses that scheme.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut found = None;
    for value in headers.get_all(AUTHORIZATION) {
        let bytes = value.as_bytes();
        let (scheme, credentials) = match bytes.iter().position(|byte| *byte == b' ') {
            Some(space) => (&bytes[..space], &bytes[space + 1..]),
            None => (bytes, &[][..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            continue;
        }
        // Two tokens are ambiguous: components in front of us might have checked the other one.
        if found.is_some() {
            return Err(AuthError::Malformed("more than one Bearer credential".to_owned()));
        }
        let token = std::str::from_utf8(credentials)
            .map_err(|_| AuthError::Malformed("bearer token is not UTF-8".to_owned()))?
            .trim();
        if token.is_empty() {
            return Err(AuthError::Malformed("bearer token is empty".to_owned()));
        }
        found = Some(token);
    }
    Ok(found)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// API keys in a header (default `x-api-key`), each mapped to an Identity.
///
/// Keys are kept only as SHA-256 digests and looked up by digest, so neither a dump of the map nor
/// the lookup timing reveals key bytes.
pub struct ApiKeyAuthenticator {
    header: HeaderName,
    keys: HashMap<[u8; 32], Identity>,
}

impl ApiKeyAuthenticator {
    /// No keys yet, read from the `x-api-key` header.
    pub fn new() -> Self {
        Self {
            header: DEFAULT_API_KEY_HEADER,
            keys: HashMap::new(),
        }
    }

    /// Reads keys from header `name` (case-insensitive, as all header names). An invalid header name
    /// logs an error and leaves the previous header in place, since configuration cannot fail here.
    pub fn header(mut self, name: &str) -> Self {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(header) => self.header = header,
            Err(_) => tracing::error!(invalid = name, kept = %self.header, "invalid API key header name; keeping the previous one"),
        }
        self
    }

    /// Accepts `key` as `identity`. Configuring the same key twice keeps the later identity (with a
    /// warning); an empty key is ignored with an error, since it would match an empty header.
    pub fn key(mut self, key: impl AsRef<[u8]>, identity: Identity) -> Self {
        let key = key.as_ref();
        if key.is_empty() {
            tracing::error!(principal = %identity.principal_id, "empty API key ignored");
            return self;
        }
        if let Some(previous) = self.keys.insert(digest(key), identity) {
            tracing::warn!(replaced = %previous.principal_id, "API key configured twice; the later identity replaces the earlier");
        }
        self
    }
}

impl Default for ApiKeyAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ApiKeyAuthenticator {
    // By hand so that not even the key digests are printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("header", &self.header)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Authenticator for ApiKeyAuthenticator {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            let mut values = headers.get_all(&self.header).iter();
            let Some(value) = values.next() else {
                return Ok(None);
            };
            // Two keys are ambiguous: components in front of us might have checked the other one.
            if values.next().is_some() {
                return Err(AuthError::Malformed(format!("more than one `{}` header", self.header)));
            }
            self.keys
                .get(&digest(value.as_bytes()))
                .cloned()
                .map(Some)
                .ok_or(AuthError::UnknownKey)
        })
    }

    fn security_scheme(&self) -> (String, Value) {
        (
            "apiKey".to_owned(),
            json!({ "type": "apiKey", "in": "header", "name": self.header.as_str() }),
        )
    }

    fn challenge(&self, _error: Option<&AuthError>) -> String {
        // Header names are tokens, so they never need escaping inside the quoted string.
        format!("ApiKey realm=\"{REALM}\", header=\"{}\"", self.header)
    }
}

/// SHA-256 of an API key: the only form in which keys are stored or compared.
pub(crate) fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};

    use super::*;

    /// Test-only HS256 secret; long enough not to trigger the short-secret warning.
    const TEST_SECRET: &str = "purest-test-only-hs256-secret-do-not-use-0123456789";

    fn headers_with(name: &str, value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    fn bearer(token: &str) -> HeaderMap {
        headers_with("authorization", format!("Bearer {token}").as_bytes())
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(algorithm), claims, key).unwrap()
    }

    fn hs_token(claims: &Value) -> String {
        sign(Algorithm::HS256, &EncodingKey::from_secret(TEST_SECRET.as_bytes()), claims)
    }

    fn rs_token(private_pem: &str, claims: &Value) -> String {
        sign(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            claims,
        )
    }

    /// Claims valid for an hour, for principal `alice` in tenant `acme`.
    fn valid_claims() -> Value {
        json!({ "sub": "alice", "tenant": "acme", "exp": get_current_timestamp() + 3600 })
    }

    /// `claims` with `key` set to `value` (or removed when `value` is null).
    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        let map = claims.as_object_mut().unwrap();
        if value.is_null() {
            map.remove(key);
        } else {
            map.insert(key.to_owned(), value);
        }
        claims
    }

    async fn auth(authenticator: &impl Authenticator, headers: &HeaderMap) -> Result<Option<Identity>, AuthError> {
        authenticator.authenticate(headers).await
    }

    fn hs() -> JwtAuthenticator {
        JwtAuthenticator::hs256(TEST_SECRET)
    }

    fn rs_a() -> JwtAuthenticator {
        JwtAuthenticator::rs256_pem(TEST_ONLY_RSA_PUBLIC_KEY_A.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn hs256_valid_token_yields_subject_and_tenant() {
        let identity = auth(&hs(), &bearer(&hs_token(&valid_claims()))).await.unwrap();
        assert_eq!(identity, Some(Identity::new("alice").with_tenant("acme")));
    }

    #[tokio::test]
    async fn hs256_token_without_tenant_has_no_tenant() {
        let token = hs_token(&with(valid_claims(), "tenant", Value::Null));
        assert_eq!(auth(&hs(), &bearer(&token)).await.unwrap(), Some(Identity::new("alice")));
    }

    #[tokio::test]
    async fn custom_tenant_claim_is_read() {
        let token = hs_token(&with(valid_claims(), "org", json!("globex")));
        let identity = auth(&hs().tenant_claim("org"), &bearer(&token)).await.unwrap();
        assert_eq!(identity, Some(Identity::new("alice").with_tenant("globex")));
    }

    #[tokio::test]
    async fn non_string_tenant_is_refused() {
        let token = hs_token(&with(valid_claims(), "tenant", json!(42)));
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::Malformed(_))));
    }

    #[tokio::test]
    async fn expired_token_is_refused() {
        let token = hs_token(&with(valid_claims(), "exp", json!(get_current_timestamp() - 3600)));
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn default_leeway_tolerates_small_skew_and_zero_leeway_does_not() {
        let token = hs_token(&with(valid_claims(), "exp", json!(get_current_timestamp() - 10)));
        assert!(auth(&hs(), &bearer(&token)).await.unwrap().is_some());
        assert!(matches!(auth(&hs().leeway(0), &bearer(&token)).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn huge_leeway_is_capped() {
        let token = hs_token(&with(valid_claims(), "exp", json!(get_current_timestamp() - 2 * 24 * 3600)));
        assert!(matches!(
            auth(&hs().leeway(u64::MAX), &bearer(&token)).await,
            Err(AuthError::Expired)
        ));
    }

    #[tokio::test]
    async fn future_nbf_is_refused() {
        let token = hs_token(&with(valid_claims(), "nbf", json!(get_current_timestamp() + 3600)));
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::NotYetValid)));
    }

    #[tokio::test]
    async fn past_nbf_is_accepted() {
        let token = hs_token(&with(valid_claims(), "nbf", json!(get_current_timestamp() - 60)));
        assert!(auth(&hs(), &bearer(&token)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn wrong_secret_is_refused() {
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another-secret-of-sufficient-length-0123"),
            &valid_claims(),
        );
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::BadSignature)));
    }

    #[tokio::test]
    async fn alg_none_token_is_refused() {
        // base64url of `{"alg":"none","typ":"JWT"}` (checked with `base64 | tr '+/' '-_'`), then the claims
        // part of a genuine token, then an empty signature.
        const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let genuine = hs_token(&valid_claims());
        let claims = genuine.split('.').nth(1).unwrap();
        let token = format!("{NONE_HEADER}.{claims}.");
        assert!(auth(&hs(), &bearer(&genuine)).await.unwrap().is_some());
        assert!(auth(&hs(), &bearer(&token)).await.is_err());
        assert!(auth(&rs_a(), &bearer(&token)).await.is_err());
    }

    #[tokio::test]
    async fn other_hmac_algorithm_is_refused() {
        let token = sign(Algorithm::HS512, &EncodingKey::from_secret(TEST_SECRET.as_bytes()), &valid_claims());
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::WrongAlgorithm)));
    }

    #[tokio::test]
    async fn hs256_token_is_refused_by_rs256_authenticator() {
        // The classic confusion attack: HMAC keyed with the (public) RSA key bytes.
        let token = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(TEST_ONLY_RSA_PUBLIC_KEY_A.as_bytes()),
            &valid_claims(),
        );
        assert!(matches!(auth(&rs_a(), &bearer(&token)).await, Err(AuthError::WrongAlgorithm)));
    }

    #[tokio::test]
    async fn rs256_token_is_refused_by_hs256_authenticator() {
        let token = rs_token(TEST_ONLY_RSA_PRIVATE_KEY_A, &valid_claims());
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::WrongAlgorithm)));
    }

    #[tokio::test]
    async fn configured_issuer_is_enforced() {
        let authenticator = hs().issuer("https://issuer.test");
        let right = hs_token(&with(valid_claims(), "iss", json!("https://issuer.test")));
        assert!(auth(&authenticator, &bearer(&right)).await.unwrap().is_some());
        let wrong = hs_token(&with(valid_claims(), "iss", json!("https://evil.test")));
        assert!(matches!(auth(&authenticator, &bearer(&wrong)).await, Err(AuthError::WrongIssuer)));
        let missing = hs_token(&valid_claims());
        assert!(matches!(auth(&authenticator, &bearer(&missing)).await, Err(AuthError::MissingClaim(claim)) if claim == "iss"));
        let array = hs_token(&with(valid_claims(), "iss", json!(["https://issuer.test", "https://evil.test"])));
        assert!(matches!(auth(&authenticator, &bearer(&array)).await, Err(AuthError::WrongIssuer)));
    }

    #[tokio::test]
    async fn configured_audience_is_enforced() {
        let authenticator = hs().audience("orders-api");
        let single = hs_token(&with(valid_claims(), "aud", json!("orders-api")));
        assert!(auth(&authenticator, &bearer(&single)).await.unwrap().is_some());
        let array = hs_token(&with(valid_claims(), "aud", json!(["billing-api", "orders-api"])));
        assert!(auth(&authenticator, &bearer(&array)).await.unwrap().is_some());
        let wrong = hs_token(&with(valid_claims(), "aud", json!("billing-api")));
        assert!(matches!(auth(&authenticator, &bearer(&wrong)).await, Err(AuthError::WrongAudience)));
        let missing = hs_token(&valid_claims());
        assert!(matches!(auth(&authenticator, &bearer(&missing)).await, Err(AuthError::MissingClaim(claim)) if claim == "aud"));
    }

    #[tokio::test]
    async fn aud_is_accepted_when_no_audience_is_configured() {
        // jsonwebtoken alone would refuse this token (InvalidAudience).
        let token = hs_token(&with(valid_claims(), "aud", json!(["anything"])));
        assert!(auth(&hs(), &bearer(&token)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn missing_or_empty_sub_is_refused() {
        let missing = hs_token(&with(valid_claims(), "sub", Value::Null));
        assert!(matches!(auth(&hs(), &bearer(&missing)).await, Err(AuthError::MissingClaim(claim)) if claim == "sub"));
        let empty = hs_token(&with(valid_claims(), "sub", json!("")));
        assert!(matches!(auth(&hs(), &bearer(&empty)).await, Err(AuthError::Malformed(_))));
        let number = hs_token(&with(valid_claims(), "sub", json!(7)));
        assert!(auth(&hs(), &bearer(&number)).await.is_err());
    }

    #[tokio::test]
    async fn missing_exp_is_refused() {
        let token = hs_token(&with(valid_claims(), "exp", Value::Null));
        assert!(matches!(auth(&hs(), &bearer(&token)).await, Err(AuthError::MissingClaim(claim)) if claim == "exp"));
    }

    #[tokio::test]
    async fn no_authorization_header_is_no_credentials() {
        assert!(auth(&hs(), &HeaderMap::new()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn other_scheme_is_no_credentials() {
        assert!(
            auth(&hs(), &headers_with("authorization", b"Basic YWxpY2U6c2VjcmV0"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            auth(&hs(), &headers_with("authorization", b"Bearerish abc"))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn bearer_scheme_is_case_insensitive() {
        let headers = headers_with("authorization", format!("bEARER {}", hs_token(&valid_claims())).as_bytes());
        assert!(auth(&hs(), &headers).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn bad_bearer_credentials_are_errors() {
        assert!(matches!(auth(&hs(), &bearer("garbage")).await, Err(AuthError::Malformed(_))));
        assert!(matches!(auth(&hs(), &bearer("a.b.c")).await, Err(AuthError::Malformed(_))));
        assert!(matches!(
            auth(&hs(), &headers_with("authorization", b"Bearer")).await,
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            auth(&hs(), &headers_with("authorization", b"Bearer    ")).await,
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            auth(&hs(), &headers_with("authorization", b"Bearer \xff\xfe")).await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn two_bearer_tokens_are_refused() {
        let token = hs_token(&valid_claims());
        let mut headers = bearer(&token);
        headers.append(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        assert!(matches!(auth(&hs(), &headers).await, Err(AuthError::Malformed(_))));
    }

    #[tokio::test]
    async fn empty_hs256_secret_refuses_every_token() {
        let token = sign(Algorithm::HS256, &EncodingKey::from_secret(b""), &valid_claims());
        let authenticator = JwtAuthenticator::hs256("");
        assert!(matches!(auth(&authenticator, &bearer(&token)).await, Err(AuthError::InvalidKey(_))));
        assert!(auth(&authenticator, &HeaderMap::new()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rs256_valid_token_is_accepted() {
        let token = rs_token(TEST_ONLY_RSA_PRIVATE_KEY_A, &valid_claims());
        assert_eq!(
            auth(&rs_a(), &bearer(&token)).await.unwrap(),
            Some(Identity::new("alice").with_tenant("acme"))
        );
    }

    #[tokio::test]
    async fn rs256_token_from_another_key_is_refused() {
        let token = rs_token(TEST_ONLY_RSA_PRIVATE_KEY_B, &valid_claims());
        assert!(matches!(auth(&rs_a(), &bearer(&token)).await, Err(AuthError::BadSignature)));
        // The same token does verify with its own key, so the refusal above is about the key.
        let rs_b = JwtAuthenticator::rs256_pem(TEST_ONLY_RSA_PUBLIC_KEY_B.as_bytes()).unwrap();
        assert!(auth(&rs_b, &bearer(&token)).await.unwrap().is_some());
    }

    #[test]
    fn rs256_pem_rejects_bad_input() {
        assert!(matches!(JwtAuthenticator::rs256_pem(b"not a pem"), Err(AuthError::InvalidKey(_))));
        let private = JwtAuthenticator::rs256_pem(TEST_ONLY_RSA_PRIVATE_KEY_A.as_bytes());
        assert!(matches!(private, Err(AuthError::InvalidKey(reason)) if reason.contains("private key")));
    }

    #[tokio::test]
    async fn errors_and_debug_never_contain_token_or_secret() {
        let authenticator = hs().issuer("https://issuer.test").audience("orders-api");
        let tokens = [
            hs_token(&valid_claims()),
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-of-sufficient-length-0123"),
                &valid_claims(),
            ),
            hs_token(&with(valid_claims(), "exp", json!(get_current_timestamp() - 3600))),
            hs_token(&with(valid_claims(), "sub", json!(TEST_SECRET))),
            // Secret smuggled into every part of a malformed token, as an attacker probing logs might.
            format!("{TEST_SECRET}.{TEST_SECRET}.{TEST_SECRET}"),
        ];
        for token in &tokens {
            let error = auth(&authenticator, &bearer(token)).await.unwrap_err();
            for text in [error.to_string(), format!("{error:?}")] {
                assert!(!text.contains(TEST_SECRET), "{text}");
                assert!(!text.contains(token.as_str()), "{text}");
                assert!(!text.contains(token.split('.').next().unwrap()), "{text}");
            }
        }
        let debug = format!("{authenticator:?}");
        assert!(
            !debug.contains(TEST_SECRET) && debug.contains("HS256") && debug.contains("orders-api"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn api_key_lookup() {
        let authenticator = ApiKeyAuthenticator::new()
            .key("k-alice-0123", Identity::new("alice").with_tenant("acme"))
            .key("k-bob-4567", Identity::new("bob"));
        assert_eq!(
            auth(&authenticator, &headers_with("x-api-key", b"k-alice-0123")).await.unwrap(),
            Some(Identity::new("alice").with_tenant("acme"))
        );
        assert_eq!(
            auth(&authenticator, &headers_with("x-api-key", b"k-bob-4567")).await.unwrap(),
            Some(Identity::new("bob"))
        );
        assert!(matches!(
            auth(&authenticator, &headers_with("x-api-key", b"k-mallory")).await,
            Err(AuthError::UnknownKey)
        ));
        assert!(matches!(
            auth(&authenticator, &headers_with("x-api-key", b"")).await,
            Err(AuthError::UnknownKey)
        ));
        assert!(auth(&authenticator, &HeaderMap::new()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn api_key_custom_header() {
        let authenticator = ApiKeyAuthenticator::default()
            .header("X-Service-Token")
            .key("k-svc", Identity::new("svc"));
        assert_eq!(
            auth(&authenticator, &headers_with("x-service-token", b"k-svc")).await.unwrap(),
            Some(Identity::new("svc"))
        );
        assert!(auth(&authenticator, &headers_with("x-api-key", b"k-svc")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn api_key_invalid_header_name_keeps_previous() {
        let authenticator = ApiKeyAuthenticator::new().header("bad header\n").key("k-svc", Identity::new("svc"));
        assert_eq!(
            auth(&authenticator, &headers_with("x-api-key", b"k-svc")).await.unwrap(),
            Some(Identity::new("svc"))
        );
    }

    #[tokio::test]
    async fn api_key_empty_key_is_ignored_and_duplicates_refused() {
        let authenticator = ApiKeyAuthenticator::new()
            .key("", Identity::new("nobody"))
            .key("k-svc", Identity::new("svc"));
        assert!(format!("{authenticator:?}").contains("keys: 1"));
        let mut headers = headers_with("x-api-key", b"k-svc");
        headers.append("x-api-key", HeaderValue::from_static("k-other"));
        assert!(matches!(auth(&authenticator, &headers).await, Err(AuthError::Malformed(_))));
    }

    #[test]
    fn api_key_debug_hides_keys() {
        let authenticator = ApiKeyAuthenticator::new().key("k-very-secret-api-key", Identity::new("alice"));
        let debug = format!("{authenticator:?}");
        assert!(!debug.contains("k-very-secret-api-key"), "{debug}");
        assert_eq!(debug, r#"ApiKeyAuthenticator { header: "x-api-key", keys: 1 }"#);
    }

    #[test]
    fn challenges() {
        assert_eq!(hs().challenge(None), r#"Bearer realm="purest""#);
        assert_eq!(
            hs().challenge(Some(&AuthError::Expired)),
            r#"Bearer realm="purest", error="invalid_token""#
        );
        let api = ApiKeyAuthenticator::new();
        assert_eq!(api.challenge(None), r#"ApiKey realm="purest", header="x-api-key""#);
        assert_eq!(
            api.challenge(Some(&AuthError::UnknownKey)),
            r#"ApiKey realm="purest", header="x-api-key""#
        );
        assert_eq!(api.header("X-Other").challenge(None), r#"ApiKey realm="purest", header="x-other""#);
    }

    #[test]
    fn security_schemes() {
        assert_eq!(
            rs_a().security_scheme(),
            (
                "bearerAuth".to_owned(),
                json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" })
            )
        );
        assert_eq!(
            ApiKeyAuthenticator::new().header("x-tok").security_scheme(),
            ("apiKey".to_owned(), json!({ "type": "apiKey", "in": "header", "name": "x-tok" }))
        );
    }

    // Test-only RSA keys, generated for these tests with
    // `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` and `openssl pkey -pubout`.
    // They protect nothing: never use them anywhere else.

    const TEST_ONLY_RSA_PRIVATE_KEY_A: &str = "\
        -----BEGIN PRIVATE KEY-----\n\
        MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDnmnvN5JJ+XsCL\n\
        CM/CUvVz5Uqujy1uZBlDMups1xi7skaeDJnuCjFR1o0dkcnBu4RpOCE5Ka4vEx1o\n\
        EJowqeTwmzPz5l7GgcFMjvHxs9F6Lw/qWYSeze+FgdWs8GjPnSCvTtwGV8/CXAep\n\
        CXPMhqhbLOOt5wWG1G5Hov3Q7CRyYvZke0P144SyOw6yYhMzkoORmwaSn3Ll8KCd\n\
        I7zTTDaB4apUoJ99S6YSjVwn7X1ouj2rJ64G8n38UzEa2c7ex+mqfTPT2wyrNnfy\n\
        l/a2Yl9QbAz6vGq3bX8mYeJ7WSGj/vsSoA3AwzNViD15ITB6KVxoOl80f77i720J\n\
        XHn0r/d1AgMBAAECggEAGMdwuQPcP4x8LbPs5IXTMInm7luvuOiZQlULe0cdJJHL\n\
        l+PRwUPSaIbbtL7xFtrs7QP+G/tPYUZ6hjSGhq/aqHp2ecEbQUJHL914WcuLHTc1\n\
        TPW0aHgwiPht59GV6SaOxWraxAv3lLwbbrSt8MM0doLMPkIiF32Zae0wmj51nM4x\n\
        ITSw2I1XAGY6YaS1TyZlZAYbzmGPEo6pxBsWIKRdii9VJkhMISyg13Eb7XoJLvyr\n\
        LTZA9UHtp5dd4WpaLDgwhtoj+hqvt0V3/9RBaayvlEjEpdCyNup5uX8eGWp9YY3D\n\
        8T+dM/knOoFvXwA2NJ/m9uIKE5zP7Mg04k/za+hE2QKBgQD352Oph8rR01bb36It\n\
        SK76BBqDJ0hjXJImkA11FLdOU59JjI7Wum6YayPXvuPeIhm+2nzR8s6XoegdBUV1\n\
        q8TTRJWMxYQb69CTYIIKV1JIOHJEoJNfuWlmVfplJXt9+thCBNOo5xvuYNmProHl\n\
        i77fn2MnDcOQ9ZgZJdF7l7xhfQKBgQDvKtBjaNdjpOCllE4K/67Xsk3jnWHVN26C\n\
        28a+Vt2g5uVPhGQGyv7vJazYwTX+kQfnhXyH/tKMnqL+qSnKVRvCZVU3dC2+y0/U\n\
        sjSL56vL9PV8bSIPLX2R9wKnedyNKOduw65GXG3JMJI98ewhQHf02MulqG6qwHl3\n\
        vbl2ZTbPWQKBgF2lrlNbdbWf5V738vayT08o/67txv2p+ZfRsRO6eKiBFFofW9In\n\
        6SFwz8BvXvsJ3LnpJV/WHk7PnbRgymVyNs8sSGY+MvKtOUSDH3yykeWwVRIxqppt\n\
        mzBKaGWPLEBh4xHFawOSEk4Rjf4mCPHiwX8OYdFd9LOs4wEU9TaAEmytAoGBAOB1\n\
        2xvhMnyXKircNB6IdkyDUCx18XKNUo9Huo+6sMgoyz/ErafebkJ9pmnLc2RWMwfr\n\
        tMNhubM10x2UH99/3sykE8U2qRQudd7V3REMvaRuYtKDDfsWo4oRPBF4AjENGZ9P\n\
        0UjByFuQ1T+DxCw0+B/4M7Bmkm54s8dYbS4bscQJAoGAaJfrrR1l4XutOiNiyFgz\n\
        yMtjdJY1RzxG4S5mRHn63kvuiCPN2ojqz5sMp5DNmv49J9gHYkFhfHAPre4gRP7Q\n\
        sf7xELl7dwCmXUvBn76MhNgRCYY4I09WHH9p940goTEcrCX66Irje1K52KUt52f6\n\
        ug6C3398v/W1ReES2J3WkAQ=\n\
        -----END PRIVATE KEY-----\n";

    const TEST_ONLY_RSA_PUBLIC_KEY_A: &str = "\
        -----BEGIN PUBLIC KEY-----\n\
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA55p7zeSSfl7AiwjPwlL1\n\
        c+VKro8tbmQZQzLqbNcYu7JGngyZ7goxUdaNHZHJwbuEaTghOSmuLxMdaBCaMKnk\n\
        8Jsz8+ZexoHBTI7x8bPRei8P6lmEns3vhYHVrPBoz50gr07cBlfPwlwHqQlzzIao\n\
        WyzjrecFhtRuR6L90OwkcmL2ZHtD9eOEsjsOsmITM5KDkZsGkp9y5fCgnSO800w2\n\
        geGqVKCffUumEo1cJ+19aLo9qyeuBvJ9/FMxGtnO3sfpqn0z09sMqzZ38pf2tmJf\n\
        UGwM+rxqt21/JmHie1kho/77EqANwMMzVYg9eSEweilcaDpfNH++4u9tCVx59K/3\n\
        dQIDAQAB\n\
        -----END PUBLIC KEY-----\n";

    const TEST_ONLY_RSA_PRIVATE_KEY_B: &str = "\
        -----BEGIN PRIVATE KEY-----\n\
        MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDGP9423Wn/ayla\n\
        ogSAREyQxqV1Q10Tf97/s4LunTMxZe6zjIKKynV3IFA8J1oSceLhRRIPyzss0ksv\n\
        9g1mnSo7nLeuwI60RmmPsEnGgAH3rDE+JEcCyfPyRCHyz05SPd/ICqSb/+b11ARw\n\
        MYl+omtn2s3vQrFRWObgvTSykVS3OsC11kXuj6EAa4hYmr8bntDYO7DBtUSukm/G\n\
        +9LVlc3b6iT+WFfa2ramhUJTAmO0OcrFzJc/8OZ78OmAfoWuF1yMtCi2YEQurHU7\n\
        wGVlxGauFMyH9o8Nw4km+SK0JMzGxbDkAEzQ2399O4KMjPNpuTj248Nopc7/VsGo\n\
        SI2sx1uJAgMBAAECggEALdxLcuSwZxIqnFk7clKaZalWUDSXnPGpK/yiTsGVvJko\n\
        aWeZMTMZjkeu1+OAjiDDS7pXLcklNL6m/v7L5c94nBaqVSYdPO3G8KLmxiEJk3pF\n\
        X+szdB00rff95HX5V8QRduyjXKULkBWOO0fyVxWKhBlVJ0KF01wd+KI8RQyijMoF\n\
        YgHFSj7+5z2ebVoTvhyZLOuYA4cPHaKZD9hLC51ARFb6zjX2Dmp4m+sR94AAj8F6\n\
        KntQPMsNWNgpdOzCULJ9G7aO1iBcPZ4fkCboTy0dUxwrn8hcSWEEKn7+WeT32FQi\n\
        WFejbEZt/v1nT+UelyYUXC0IIYvukaR4YgESMMB3qwKBgQD38xbMohoE53D+sNeu\n\
        sewyakoSi7zhwJxrGK++ReLYYhghlEjKFqBnZW7QGMW509TiIb392RJKJ2kslmTH\n\
        rYP0MoS+O7au5pfLRHTC0QuBLImLAWHmxbvygInIO/z+8ug6nTDwlqHvPzA8ExEp\n\
        Gokna+0SA/hDogf5ecoQOjbwzwKBgQDMr65a2DHPXAQCBw7WoDeBuRT4Tc/iC0Es\n\
        qvbzk3wmI8YOPCj/FyeGBHJzkZjeVBinKF4WGDfb8yyF8M8gnf2DlgJsIYBIQaqV\n\
        Rqj7QZxXoE1HyowLWO+TapAhtYFc/YxqL8cdjFGNyWw0RlzFXZsECcVSUueDFKWM\n\
        2D3DQ/+UJwKBgFyXCSeHTQIRzy88qH4S8OnuqRR93B3NSFvxzwbVoB0/nFVFw1y7\n\
        0FBsH1JUPdnj0bZT9VfK7LqGNw8wZhfuorzY9Jr5P4HWmE6OlK9/UrV9BSvEa2O6\n\
        6TFocIs2Y4Zs/O2Ob40YIwZtaTy1vg3EW/09nzzAAMB4zFOL+DnRE10fAoGBAI5H\n\
        NAgbrYv45yRNqafQ2KSIdaYf2HfE4PneoSgxBaQxS7OLZ+fhPWzv3Gqu8zbf9/8B\n\
        lV0AWpu+Td2QxTlj+Nulw2tMYjJXyu5WnpGASt+yIuXbSjt9B5NOCIAV/aUY7ajG\n\
        Kz9D0VCgiWFQ452hcmZ9MDcIP7si9+yOR2ha9OYTAoGABFIYDfp7XlP5YUkgqkfN\n\
        skw7q4NtsoPIteS+53wq8qK8UQLppulOgjNMoQUcHxYi1BcYaDLj7ZtyCC5HuUyw\n\
        o7G8n09PRFsgoM9sngn7+7SSXdkX4uXizUkA3AhtpwzEKBfshegaqWh/YHH3g98S\n\
        +sP5cRuuhJ82yYWjYWWnjyE=\n\
        -----END PRIVATE KEY-----\n";

    const TEST_ONLY_RSA_PUBLIC_KEY_B: &str = "\
        -----BEGIN PUBLIC KEY-----\n\
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxj/eNt1p/2spWqIEgERM\n\
        kMaldUNdE3/e/7OC7p0zMWXus4yCisp1dyBQPCdaEnHi4UUSD8s7LNJLL/YNZp0q\n\
        O5y3rsCOtEZpj7BJxoAB96wxPiRHAsnz8kQh8s9OUj3fyAqkm//m9dQEcDGJfqJr\n\
        Z9rN70KxUVjm4L00spFUtzrAtdZF7o+hAGuIWJq/G57Q2DuwwbVErpJvxvvS1ZXN\n\
        2+ok/lhX2tq2poVCUwJjtDnKxcyXP/Dme/DpgH6FrhdcjLQotmBELqx1O8BlZcRm\n\
        rhTMh/aPDcOJJvkitCTMxsWw5ABM0Nt/fTuCjIzzabk49uPDaKXO/1bBqEiNrMdb\n\
        iQIDAQAB\n\
        -----END PUBLIC KEY-----\n";
}
