//! Compact JWS (JWT) assembly and PEM private keys: just what the FCM assertion (RS256) and the
//! APNs provider token (ES256) need. Signing is the caller's (aws-lc-rs); nothing here verifies.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use serde::Serialize;

/// `base64url(header) "." base64url(claims)`: the bytes a JWS signs.
pub(crate) fn signing_input(
    header: &impl Serialize,
    claims: &impl Serialize,
) -> Result<String, serde_json::Error> {
    let header = serde_json::to_vec(header)?;
    let claims = serde_json::to_vec(claims)?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    ))
}

/// The compact JWS: the signing input, a dot, the signature in base64url.
pub(crate) fn compact(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The DER inside the first PEM block labelled `label` (`"PRIVATE KEY"` for PKCS#8).
///
/// Errors say what is wrong without quoting the input.
pub(crate) fn pem_block(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = pem.find(&begin) else {
        return Err(match pem.find("-----BEGIN ") {
            Some(_) => format!("expected a PEM block \"{label}\" (PKCS#8), found another kind"),
            None => format!("expected a PEM block \"{label}\", found no PEM"),
        });
    };
    let body = &pem[start + begin.len()..];
    let Some(stop) = body.find(&end) else {
        return Err(format!("the PEM block \"{label}\" has no end line"));
    };
    let b64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|_| format!("the PEM block \"{label}\" is not valid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_block_decodes_the_body_across_lines() {
        let pem = "junk\n-----BEGIN PRIVATE KEY-----\nAAEC\r\nAwQF\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_block(pem, "PRIVATE KEY"), Ok(vec![0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn pem_block_errors_do_not_quote_the_input() {
        let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----";
        let err = pem_block(pkcs1, "PRIVATE KEY").expect_err("an error");
        assert!(err.contains("another kind"), "{err}");
        assert!(!err.contains("c2VjcmV0"));
        assert!(pem_block("c2VjcmV0", "PRIVATE KEY")
            .expect_err("an error")
            .contains("no PEM"));
        assert!(
            pem_block("-----BEGIN PRIVATE KEY-----\nAAEC", "PRIVATE KEY")
                .expect_err("an error")
                .contains("no end")
        );
        assert!(pem_block(
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----",
            "PRIVATE KEY"
        )
        .expect_err("an error")
        .contains("base64"));
    }

    #[test]
    fn compact_jws_has_three_base64url_parts() {
        let input = signing_input(&serde_json::json!({"alg": "ES256"}), &serde_json::json!({}))
            .expect("json");
        assert_eq!(input, "eyJhbGciOiJFUzI1NiJ9.e30");
        assert_eq!(
            compact(&input, &[0xfb, 0xff]),
            "eyJhbGciOiJFUzI1NiJ9.e30.-_8"
        );
    }
}
