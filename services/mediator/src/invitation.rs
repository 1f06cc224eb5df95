//! The mediator's Out-of-Band 1.1 invitation (Aries RFC 0434): multi-use, one service per
//! endpoint, the invitation key as did:key. Rendered as JSON, as an `?oob=` URL, as a short URL
//! (`<http endpoint>/i`: the invitation JSON to `Accept: application/json`, as credo-ts and
//! ACA-Py resolve shortened invitation URLs, and a redirect to the `?oob=` URL otherwise), and as
//! QR codes: of the short URL for a terminal (it fits 80 columns), of the full URL for a browser
//! (SVG).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use didcomm_envelope::VerKey;
use qrcode::{render::svg, render::unicode, EcLevel, QrCode};
use serde_json::{json, Value};

/// Which handshake protocols an invitation offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshakes {
    /// DID Exchange 1.1 and 1.0, then Connections 1.0 (clients pick the first they support).
    All,
    /// Connections 1.0 only, for clients that must use it.
    ConnectionsOnly,
}

/// The invitation, built once at start-up.
#[derive(Debug, Clone)]
pub struct Invitation {
    json: Value,
    url: String,
    short_url: String,
}

/// The path of the short invitation URL under the HTTP endpoint.
pub const SHORT_PATH: &str = "/i";

impl Invitation {
    /// Builds the invitation for `key`, advertising `endpoints` in that order.
    pub fn new(
        id: &str,
        label: &str,
        key: &VerKey,
        endpoints: &[&str],
        handshakes: Handshakes,
    ) -> Self {
        let protocols: &[&str] = match handshakes {
            Handshakes::All => &[
                "https://didcomm.org/didexchange/1.1",
                "https://didcomm.org/didexchange/1.0",
                "https://didcomm.org/connections/1.0",
            ],
            Handshakes::ConnectionsOnly => &["https://didcomm.org/connections/1.0"],
        };
        let services: Vec<Value> = endpoints
            .iter()
            .enumerate()
            .map(|(i, endpoint)| {
                json!({
                    "id": format!("#inline-{i}"),
                    "type": "did-communication",
                    "serviceEndpoint": endpoint,
                    "recipientKeys": [key.to_did_key()],
                    "routingKeys": [],
                })
            })
            .collect();
        let json = json!({
            "@type": "https://didcomm.org/out-of-band/1.1/invitation",
            "@id": id,
            "label": label,
            "accept": ["didcomm/aip1", "didcomm/aip2;env=rfc19"],
            "handshake_protocols": protocols,
            "services": services,
        });
        let base = endpoints.first().copied().unwrap_or_default();
        let url = format!("{base}?oob={}", URL_SAFE_NO_PAD.encode(json.to_string()));
        let short_url = format!("{}{SHORT_PATH}", base.trim_end_matches('/'));
        Self {
            json,
            url,
            short_url,
        }
    }

    /// The invitation message.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The invitation's `@id` (handshake requests carry it as `pthid`).
    pub fn id(&self) -> &str {
        self.json["@id"].as_str().unwrap_or_default()
    }

    /// The `…?oob=` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The short URL (`<http endpoint>/i`) of the main invitation: what a wallet needs to type
    /// or scan (it fetches the invitation from there).
    pub fn short_url(&self) -> &str {
        &self.short_url
    }

    fn qr(&self) -> Option<QrCode> {
        QrCode::with_error_correction_level(self.url.as_bytes(), EcLevel::L).ok()
    }

    /// The short URL as a QR code drawn with Unicode half blocks, for a terminal (a 30-character
    /// URL is 33 columns wide with its quiet zone; the full URL would be over 100).
    pub fn qr_terminal(&self) -> String {
        QrCode::with_error_correction_level(self.short_url.as_bytes(), EcLevel::L)
            .ok()
            .map(|code| {
                code.render::<unicode::Dense1x2>()
                    .dark_color(unicode::Dense1x2::Light)
                    .light_color(unicode::Dense1x2::Dark)
                    .build()
            })
            .unwrap_or_else(|| "(invitation URL too long for a QR code)".to_owned())
    }

    /// The URL as an SVG QR code, for a browser.
    pub fn qr_svg(&self) -> Option<String> {
        self.qr().map(|code| {
            code.render::<svg::Color<'_>>()
                .min_dimensions(320, 320)
                .build()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use didcomm_envelope::KeyPair;

    #[test]
    fn invitation_has_what_clients_need_and_url_decodes_to_it() {
        let key = KeyPair::generate().unwrap();
        let inv = Invitation::new(
            "id-1",
            "Mediator",
            key.verkey(),
            &["http://127.0.0.1:3000", "ws://127.0.0.1:3000"],
            Handshakes::All,
        );
        let j = inv.json();
        assert_eq!(j["@type"], "https://didcomm.org/out-of-band/1.1/invitation");
        assert_eq!(
            j["handshake_protocols"][0],
            "https://didcomm.org/didexchange/1.1"
        );
        assert_eq!(j["services"].as_array().unwrap().len(), 2);
        assert_eq!(j["services"][1]["serviceEndpoint"], "ws://127.0.0.1:3000");
        assert_eq!(
            j["services"][0]["recipientKeys"][0],
            key.verkey().to_did_key()
        );
        let encoded = inv.url().split_once("?oob=").unwrap().1;
        let decoded: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert_eq!(&decoded, j);
        assert!(inv.qr_svg().unwrap().starts_with("<?xml"));
        assert_eq!(inv.short_url(), "http://127.0.0.1:3000/i");
    }

    /// The terminal QR code is of the short URL and fits an 80-column terminal, for an endpoint
    /// as long as operators' usually are.
    #[test]
    fn terminal_qr_code_fits_80_columns() {
        let key = KeyPair::generate().unwrap();
        let endpoint = "https://mediator.identity-wallets.example.org:8443";
        let inv = Invitation::new(
            "id-1",
            "Mediator",
            key.verkey(),
            &[endpoint, "wss://mediator.identity-wallets.example.org:8443"],
            Handshakes::All,
        );
        let qr = inv.qr_terminal();
        let width = qr.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(width <= 80, "{width} columns");
        assert!(qr.lines().count() >= 10, "{qr}");
        // The full URL would not fit.
        let full = QrCode::with_error_correction_level(inv.url().as_bytes(), EcLevel::L).unwrap();
        assert!(full.width() + 8 > 80, "{}", full.width());
        let decoded = QrCode::with_error_correction_level(inv.short_url().as_bytes(), EcLevel::L)
            .unwrap()
            .width();
        assert_eq!(width, decoded + 8, "the QR code drawn is the short URL's");
    }
}
