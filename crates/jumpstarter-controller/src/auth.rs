//! Tokens and caller identity.
//!
//! * Internal tokens: ES256 JWTs (no `kid`) with `iss` `https://localhost:8085`, `aud`
//!   `["jumpstarter"]`, `sub` `client:<ns>:<name>:<uid>` / `exporter:<ns>:<name>:<uid>`, the
//!   claims the Go controller mints, so configs look the same and the Python side's error
//!   handling (`token is expired`) works unchanged.
//! * Router tokens: HS256, `sub` = the stream id, 30 minutes.
//! * [`Caller`]: the `authorization` + `jumpstarter-*` metadata checks of controller.md §2.1
//!   and §2.4 with upstream's codes and texts. External OIDC issuers would plug in beside
//!   [`Keys::verify_internal`] (the union of authenticators keyed by `iss`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::model::{ClientRecord, ExporterRecord};

pub const INTERNAL_ISSUER: &str = "https://localhost:8085";
pub const INTERNAL_AUDIENCE: &str = "jumpstarter";
pub const INTERNAL_PREFIX: &str = "internal:";
pub const ROUTER_ISSUER: &str = "https://jumpstarter.dev/stream";
pub const ROUTER_AUDIENCE: &str = "https://jumpstarter.dev/router";
pub const ROUTER_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Default lifetime of internal tokens (Go: 365 days when not configured).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Serialize, Deserialize)]
struct InternalClaims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    iat: u64,
    exp: u64,
    /// The credential generation of the record the token was minted for (absent: 0, as in
    /// every token minted before rotation revoked old ones). A token whose generation is not
    /// the record's current one has been replaced by RotateToken and is refused.
    #[serde(rename = "gen", default, skip_serializing_if = "is_zero")]
    generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a verified internal token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `internal:<sub>`.
    pub username: String,
    /// The credential generation the token carries.
    pub generation: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RouterClaims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    /// `<namespace>/<lease>` of the Dial that minted the token, so the router can tie the
    /// stream to its lease (and end it with the lease). Only our router reads its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
}

/// What a verified router token grants: one stream id, of a lease when the token says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterGrant {
    pub stream: String,
    /// (namespace, lease name).
    pub lease: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
    #[error("the stored signing key is not usable: {0}")]
    Bad(String),
}

/// The signing keys of one controller.
#[derive(Clone)]
pub struct Keys {
    internal_enc: EncodingKey,
    internal_dec: DecodingKey,
    router_enc: EncodingKey,
    router_dec: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// New key material: (ES256 private key PKCS#8 PEM, router HMAC key base64).
pub fn generate_keys() -> Result<(String, String), KeyError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut router = [0u8; 32];
    rand::fill(&mut router);
    Ok((
        kp.serialize_pem(),
        base64::engine::general_purpose::STANDARD.encode(router),
    ))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Keys {
    pub fn from_stored(signing_pem: &str, router_b64: &str) -> Result<Keys, KeyError> {
        let kp = rcgen::KeyPair::from_pem(signing_pem).map_err(|e| KeyError::Bad(e.to_string()))?;
        let internal_enc = EncodingKey::from_ec_pem(signing_pem.as_bytes())
            .map_err(|e| KeyError::Bad(e.to_string()))?;
        let internal_dec = DecodingKey::from_ec_pem(kp.public_key_pem().as_bytes())
            .map_err(|e| KeyError::Bad(e.to_string()))?;
        let router = base64::engine::general_purpose::STANDARD
            .decode(router_b64)
            .map_err(|e| KeyError::Bad(format!("router key: {e}")))?;
        Ok(Keys {
            internal_enc,
            internal_dec,
            router_enc: EncodingKey::from_secret(&router),
            router_dec: DecodingKey::from_secret(&router),
        })
    }

    /// Mints an internal token for `kind` (`client` or `exporter`), generation 0.
    pub fn mint_internal(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        uid: &str,
        lifetime: Duration,
    ) -> Result<(String, u64), KeyError> {
        self.mint_internal_gen(kind, ns, name, uid, lifetime, 0)
    }

    /// Mints an internal token carrying credential generation `generation`.
    pub fn mint_internal_gen(
        &self,
        kind: &str,
        ns: &str,
        name: &str,
        uid: &str,
        lifetime: Duration,
        generation: u64,
    ) -> Result<(String, u64), KeyError> {
        let iat = unix(SystemTime::now());
        let exp = iat.saturating_add(lifetime.as_secs());
        let claims = InternalClaims {
            iss: INTERNAL_ISSUER.into(),
            sub: format!("{kind}:{ns}:{name}:{uid}"),
            aud: vec![INTERNAL_AUDIENCE.into()],
            iat,
            exp,
            generation,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.internal_enc)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok((token, exp))
    }

    /// Verifies a bearer token and returns its username (`internal:<sub>`) and credential
    /// generation. Errors are UNKNOWN with the Go authenticator's texts.
    pub fn verify_internal(&self, token: &str) -> Result<Verified, Status> {
        let iss = unverified_issuer(token);
        if iss.as_deref() != Some(INTERNAL_ISSUER) {
            // No authenticator claims the token.
            return Err(Status::unknown("failed to authenticate token"));
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[INTERNAL_ISSUER]);
        v.set_audience(&[INTERNAL_AUDIENCE]);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<InternalClaims>(token, &self.internal_dec, &v) {
            Ok(d) => Ok(Verified {
                username: format!("{INTERNAL_PREFIX}{}", d.claims.sub),
                generation: d.claims.generation,
            }),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                let msg = match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        let exp = unverified_exp(token).unwrap_or(0);
                        format!(
                            "oidc: verify token: oidc: token is expired (Token Expiry: {})",
                            rfc3339(exp)
                        )
                    }
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        "oidc: verify token: failed to verify signature: failed to verify id \
                         token signature"
                            .to_string()
                    }
                    ErrorKind::InvalidAudience => {
                        format!(
                            "oidc: verify token: oidc: expected audience \"{INTERNAL_AUDIENCE}\""
                        )
                    }
                    _ => format!("oidc: verify token: oidc: malformed jwt: {e}"),
                };
                Err(Status::unknown(msg))
            }
        }
    }

    /// Mints a router token for a new stream of no particular lease; returns (token, stream id).
    pub fn mint_router(&self) -> Result<(String, String), KeyError> {
        self.mint_router_for(None)
    }

    /// Mints a router token for a new stream of lease `(namespace, name)`; returns (token,
    /// stream id).
    pub fn mint_router_for(
        &self,
        lease: Option<(&str, &str)>,
    ) -> Result<(String, String), KeyError> {
        let now = unix(SystemTime::now());
        let stream = uuid::Uuid::new_v4().to_string();
        let claims = RouterClaims {
            iss: ROUTER_ISSUER.into(),
            sub: stream.clone(),
            aud: vec![ROUTER_AUDIENCE.into()],
            iat: now,
            nbf: now,
            exp: now + ROUTER_TOKEN_LIFETIME.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
            lease: lease.map(|(ns, name)| format!("{ns}/{name}")),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.router_enc)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok((token, stream))
    }

    /// Checks a router token; returns what it grants. Any failure is UNAUTHENTICATED.
    pub fn verify_router(&self, token: &str) -> Result<RouterGrant, Status> {
        let mut v = Validation::new(Algorithm::HS256);
        v.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        v.set_issuer(&[ROUTER_ISSUER]);
        v.set_audience(&[ROUTER_AUDIENCE]);
        v.leeway = 0;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<RouterClaims>(token, &self.router_dec, &v)
            .map_err(|_| Status::unauthenticated("invalid jwt token"))?
            .claims;
        if claims.iat > unix(SystemTime::now()) {
            return Err(Status::unauthenticated("invalid jwt token"));
        }
        let lease = claims.lease.as_deref().and_then(|l| {
            l.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
        });
        Ok(RouterGrant {
            stream: claims.sub,
            lease,
        })
    }
}

fn unverified_payload(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unverified_issuer(token: &str) -> Option<String> {
    unverified_payload(token)?
        .get("iss")?
        .as_str()
        .map(str::to_string)
}

fn unverified_exp(token: &str) -> Option<i64> {
    unverified_payload(token)?.get("exp")?.as_i64()
}

/// `2006-01-02 15:04:05 +0000 UTC` style is what Go prints; RFC 3339 is close enough for a
/// human and keeps the `token is expired` substring the clients match.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The kind a caller claims in `jumpstarter-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Exporter,
}

/// What the metadata of a call says (before the token is checked).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub token: String,
    pub kind: String,
    pub namespace: String,
    pub name: Option<String>,
}

fn single(md: &MetadataMap, key: &str) -> Result<Option<String>, ()> {
    let mut it = md.get_all(key).iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(());
    }
    Ok(first.and_then(|v| v.to_str().ok()).map(str::to_string))
}

/// The bearer token of a call: UNAUTHENTICATED when missing, INVALID_ARGUMENT when
/// duplicated or not a bearer.
pub fn bearer(md: &MetadataMap) -> Result<String, Status> {
    let auth = single(md, "authorization")
        .map_err(|_| Status::invalid_argument("multiple authorization headers"))?
        .ok_or_else(|| Status::unauthenticated("missing authorization header"))?;
    if auth.len() < 7 || !auth[..7].eq_ignore_ascii_case("bearer ") {
        return Err(Status::invalid_argument("malformed authorization header"));
    }
    Ok(auth[7..].to_string())
}

/// Extracts the controller metadata contract of §2.1.
pub fn claimed(md: &MetadataMap) -> Result<Claimed, Status> {
    if md.is_empty() {
        return Err(Status::invalid_argument("missing metadata"));
    }
    let token = bearer(md)?;
    let get = |key: &str| -> Result<String, Status> {
        single(md, key)
            .map_err(|_| Status::invalid_argument(format!("multiple metadata: {key}")))?
            .ok_or_else(|| Status::invalid_argument(format!("missing metadata: {key}")))
    };
    let namespace = get("jumpstarter-namespace")?;
    let kind = get("jumpstarter-kind")?;
    let name = single(md, "jumpstarter-name").ok().flatten();
    Ok(Claimed {
        token,
        kind,
        namespace,
        name,
    })
}

/// The internal subject (without prefix) an object's tokens carry.
pub fn client_subject(c: &ClientRecord) -> String {
    format!("client:{}:{}:{}", c.namespace, c.name, c.uid)
}

pub fn exporter_subject(e: &ExporterRecord) -> String {
    format!("exporter:{}:{}:{}", e.namespace, e.name, e.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let (a, b) = generate_keys().unwrap();
        Keys::from_stored(&a, &b).unwrap()
    }

    #[test]
    fn internal_tokens_round_trip_and_fail_like_go() {
        let k = keys();
        let (t, _) = k
            .mint_internal("client", "lab", "alice", "u1", DEFAULT_TOKEN_LIFETIME)
            .unwrap();
        assert_eq!(
            k.verify_internal(&t).unwrap(),
            Verified {
                username: "internal:client:lab:alice:u1".into(),
                generation: 0
            }
        );
        let (t, _) = k
            .mint_internal_gen("client", "lab", "alice", "u1", DEFAULT_TOKEN_LIFETIME, 3)
            .unwrap();
        assert_eq!(k.verify_internal(&t).unwrap().generation, 3);
        // Signed by another key.
        let other = keys();
        let e = other.verify_internal(&t).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unknown);
        assert!(e.message().contains("failed to verify signature"), "{e:?}");
        // Expired.
        let (t, _) = k
            .mint_internal("client", "lab", "alice", "u1", Duration::ZERO)
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let e = k.verify_internal(&t).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unknown);
        assert!(e.message().contains("token is expired"), "{e:?}");
        // Garbage and router tokens are nobody's.
        assert_eq!(
            k.verify_internal("abc").unwrap_err().message(),
            "failed to authenticate token"
        );
        let (rt, _) = k.mint_router().unwrap();
        assert_eq!(
            k.verify_internal(&rt).unwrap_err().message(),
            "failed to authenticate token"
        );
    }

    #[test]
    fn router_tokens_bind_a_stream() {
        let k = keys();
        let (t, id) = k.mint_router().unwrap();
        assert_eq!(
            k.verify_router(&t).unwrap(),
            RouterGrant {
                stream: id,
                lease: None
            }
        );
        let (t, id) = k.mint_router_for(Some(("lab", "l1"))).unwrap();
        assert_eq!(
            k.verify_router(&t).unwrap(),
            RouterGrant {
                stream: id,
                lease: Some(("lab".into(), "l1".into()))
            }
        );
        let e = keys().verify_router(&t).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert_eq!(e.message(), "invalid jwt token");
        let (it, _) = k
            .mint_internal("client", "lab", "a", "u", DEFAULT_TOKEN_LIFETIME)
            .unwrap();
        assert_eq!(
            k.verify_router(&it).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn metadata_errors() {
        let mut md = MetadataMap::new();
        assert_eq!(claimed(&md).unwrap_err().message(), "missing metadata");
        md.insert("jumpstarter-kind", "Client".parse().unwrap());
        let e = claimed(&md).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::Unauthenticated, "missing authorization header")
        );
        md.insert("authorization", "Basic x".parse().unwrap());
        assert_eq!(
            claimed(&md).unwrap_err().message(),
            "malformed authorization header"
        );
        md.insert("authorization", "bearer x".parse().unwrap());
        assert_eq!(
            claimed(&md).unwrap_err().message(),
            "missing metadata: jumpstarter-namespace"
        );
        md.append("authorization", "Bearer y".parse().unwrap());
        assert_eq!(
            claimed(&md).unwrap_err().message(),
            "multiple authorization headers"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
