//! Signed web-hooks in the Standard Webhooks style.
//!
//! Each delivery carries `webhook-id` (the order's idempotency key, the same on every retry),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256
//! of `{id}.{timestamp}.{body}` under the shared secret. Secrets are written `whsec_` + base64.
//! A receiver recomputes the signature, compares it in constant time, and rejects timestamps more
//! than [`TOLERANCE_SECS`] away from its clock (replays).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The body of an order delivered to the provisioner's web hook (README: the provisioner
/// contract). The dispatcher sends it; fake-cloud and `prewarm provisioner-check` read it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct OrderBody {
    /// The order's idempotency key, also sent as `webhook-id`: apply each id once.
    pub id: String,
    /// The fleet's name.
    pub fleet: String,
    /// `boot` or `terminate`.
    pub kind: prewarm_store::OrderKind,
    /// How many instances to start or stop.
    pub count: u32,
    /// When prewarm made the order (RFC 3339).
    pub created_at: String,
}

/// How far a timestamp may be from the receiver's clock.
pub const TOLERANCE_SECS: i64 = 300;

/// A shared web-hook secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    /// A signature header is missing.
    Missing(&'static str),
    #[error("`webhook-timestamp` is not a Unix time in seconds")]
    /// The timestamp is not a Unix time.
    BadTimestamp,
    #[error("timestamp {0} s away from now is outside the {TOLERANCE_SECS} s tolerance (replayed or clock skew)")]
    /// The timestamp is outside the tolerance (seconds away).
    Stale(i64),
    #[error("no signature matches")]
    /// No signature matches.
    BadSignature,
}

impl Secret {
    /// Parses `whsec_<base64>` (or bare base64).
    pub fn parse(text: &str) -> Result<Self, String> {
        let b64 = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "the web-hook secret must be `whsec_` followed by base64".to_string())?;
        if bytes.len() < 16 {
            return Err("the web-hook secret must hold at least 16 bytes".into());
        }
        Ok(Self(bytes))
    }

    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        Self(bytes)
    }

    /// The `whsec_` form, to hand to the other side.
    pub fn encoded(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    /// Checks a delivery's headers and body at time `now` (Unix seconds).
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let id = id.ok_or(VerifyError::Missing("webhook-id"))?;
        let timestamp: i64 = timestamp
            .ok_or(VerifyError::Missing("webhook-timestamp"))?
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let signature = signature.ok_or(VerifyError::Missing("webhook-signature"))?;
        if (now - timestamp).abs() > TOLERANCE_SECS {
            return Err(VerifyError::Stale(now - timestamp));
        }
        // Several space-separated signatures may be sent (during a secret rotation).
        for candidate in signature.split_whitespace() {
            let Some(b64) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(bytes) = STANDARD.decode(b64) else {
                continue;
            };
            if self.mac(id, timestamp, body).verify_slice(&bytes).is_ok() {
                return Ok(());
            }
        }
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = Secret::generate();
        let body = br#"{"kind":"boot","count":3}"#;
        let sig = secret.sign("order-1", 1_700_000_000, body);
        assert!(sig.starts_with("v1,"));
        let ok = |id: &str, ts: &str, sig: &str, body: &[u8], now: i64| {
            secret.verify(Some(id), Some(ts), Some(sig), body, now)
        };
        assert_eq!(
            ok("order-1", "1700000000", &sig, body, 1_700_000_010),
            Ok(())
        );
        assert_eq!(
            ok("order-2", "1700000000", &sig, body, 1_700_000_010),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            ok("order-1", "1700000001", &sig, body, 1_700_000_010),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            ok(
                "order-1",
                "1700000000",
                &sig,
                br#"{"kind":"boot","count":30}"#,
                1_700_000_010
            ),
            Err(VerifyError::BadSignature)
        );
        let other = Secret::generate().sign("order-1", 1_700_000_000, body);
        assert_eq!(
            ok("order-1", "1700000000", &other, body, 1_700_000_010),
            Err(VerifyError::BadSignature)
        );
        // A rotation sends two signatures; either may match.
        assert_eq!(
            ok(
                "order-1",
                "1700000000",
                &format!("{other} {sig}"),
                body,
                1_700_000_010
            ),
            Ok(())
        );
    }

    #[test]
    fn stale_or_missing_headers_are_refused() {
        let secret = Secret::generate();
        let sig = secret.sign("o", 1_700_000_000, b"{}");
        assert_eq!(
            secret.verify(
                Some("o"),
                Some("1700000000"),
                Some(&sig),
                b"{}",
                1_700_000_000 + 301
            ),
            Err(VerifyError::Stale(301))
        );
        assert_eq!(
            secret.verify(None, Some("1700000000"), Some(&sig), b"{}", 1_700_000_000),
            Err(VerifyError::Missing("webhook-id"))
        );
        assert_eq!(
            secret.verify(Some("o"), Some("soon"), Some(&sig), b"{}", 1_700_000_000),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = Secret::generate();
        let back = Secret::parse(&s.encoded()).unwrap();
        assert_eq!(back.sign("a", 1, b"x"), s.sign("a", 1, b"x"));
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("16 bytes"));
        assert_eq!(format!("{s:?}"), "Secret(redacted)");
    }
}
