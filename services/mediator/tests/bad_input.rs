//! Bad input against a real instance on loopback: each refusal has its own status and code, and
//! the instance keeps serving other clients throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Instance;
use didcomm_envelope::{pack, ContentEnc, KeyPair};
use serde_json::{json, Value};

/// A healthy client keeps being served between bad requests: the invitation endpoint answers.
async fn still_serving(i: &Instance) {
    let inv: Value = reqwest::get(format!("{}/invitation", i.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        inv["@type"],
        "https://didcomm.org/out-of-band/1.1/invitation"
    );
}

#[tokio::test]
async fn envelope_that_does_not_parse_is_400() {
    let i = Instance::start(None).await;
    for body in [
        &b"not json"[..],
        b"{}",
        b"{\"protected\":\"!!\",\"iv\":\"\",\"ciphertext\":\"\",\"tag\":\"\"}",
    ] {
        let (status, err) = i.post(body.to_vec()).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"], "bad_envelope");
        still_serving(&i).await;
    }
    i.stop().await;
}

#[tokio::test]
async fn message_from_unknown_connection_is_403() {
    let i = Instance::start(None).await;
    // Authcrypted to a key this mediator never gave out (a connection it does not have).
    let stranger = KeyPair::generate().unwrap();
    let unknown = KeyPair::generate().unwrap();
    let body = pack(
        br#"{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"1"}"#,
        &[*unknown.verkey()],
        Some(&stranger),
        ContentEnc::C20P,
    )
    .unwrap();
    let (status, err) = i.post(body).await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"], "unknown_recipient");
    still_serving(&i).await;
    i.stop().await;
}

#[tokio::test]
async fn forward_to_unknown_key_is_404_and_stores_nothing() {
    let i = Instance::start(None).await;
    let nobody = KeyPair::generate().unwrap();
    let forward = json!({
        "@type": "https://didcomm.org/routing/1.0/forward",
        "@id": "f-1",
        "to": nobody.verkey_base58(),
        "msg": {"protected": "e30", "iv": "", "ciphertext": "", "tag": ""},
    });
    let routing = *i.mediator.keys().routing_key().verkey();
    let body = pack(
        &serde_json::to_vec(&forward).unwrap(),
        &[routing],
        None,
        ContentEnc::C20P,
    )
    .unwrap();
    let (status, err) = i.post(body).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"], "unknown_forward_recipient");
    // No connection owns the key, so no queue can hold it; and the keylist index is untouched.
    assert!(i
        .mediator
        .stores()
        .mediation
        .connection_for_key(nobody.verkey())
        .await
        .unwrap()
        .is_none());
    still_serving(&i).await;
    i.stop().await;
}

#[tokio::test]
async fn malformed_forward_is_400() {
    let i = Instance::start(None).await;
    let routing = *i.mediator.keys().routing_key().verkey();
    let forward = json!({"@type": "https://didcomm.org/routing/1.0/forward", "@id": "f-2", "to": "not a key", "msg": {}});
    let body = pack(
        &serde_json::to_vec(&forward).unwrap(),
        &[routing],
        None,
        ContentEnc::C20P,
    )
    .unwrap();
    let (status, err) = i.post(body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "bad_forward");
    i.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_default_1_mib() {
    let i = Instance::start(None).await;
    assert_eq!(i.mediator.config().limits.max_message_bytes, 1024 * 1024);
    let (status, _) = i.post(vec![b'x'; 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    still_serving(&i).await;
    i.stop().await;

    let small = Instance::start(Some(4096)).await;
    let (status, _) = small.post(vec![b'x'; 5000]).await;
    assert_eq!(status, 413);
    // Under the limit it is judged on content instead.
    let (status, _) = small.post(vec![b'x'; 4000]).await;
    assert_eq!(status, 400);
    small.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let i = Instance::start(None).await;
    let res = reqwest::Client::new()
        .post(&i.base)
        .header("content-type", "text/html")
        .body("<html/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
    i.stop().await;
}

#[tokio::test]
async fn invitation_is_served_as_json_url_and_svg() {
    let i = Instance::start(None).await;
    still_serving(&i).await;
    let url = reqwest::get(format!("{}/invitation?format=url", i.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(url.trim().starts_with(&format!("{}?oob=", i.base)), "{url}");
    let svg = reqwest::get(format!("{}/invitation.svg", i.base))
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    let conn: Value = reqwest::get(format!("{}/invitation?handshake=connections", i.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        conn["handshake_protocols"],
        json!(["https://didcomm.org/connections/1.0"])
    );
    i.stop().await;
}

/// The short invitation URL: JSON to a client asking for JSON (how credo-ts and ACA-Py resolve a
/// shortened URL), a redirect to the full `?oob=` URL for anything else (a browser).
#[tokio::test]
async fn short_invitation_url_gives_json_or_redirects() {
    let i = Instance::start(None).await;
    let full: Value = reqwest::get(format!("{}/invitation", i.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let json = client
        .get(format!("{}/i", i.base))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status().as_u16(), 200);
    assert!(json.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(json.json::<Value>().await.unwrap(), full);
    let url = reqwest::get(format!("{}/invitation?format=url", i.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let browser = client
        .get(format!("{}/i", i.base))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status().as_u16(), 302);
    assert_eq!(browser.headers()["location"].to_str().unwrap(), url.trim());
    i.stop().await;
}

#[tokio::test]
async fn forward_over_the_queue_cap_is_507_and_nothing_is_stored() {
    let i = Instance::start_with(None, &[("MEDIATOR_QUEUE__MAX_MESSAGES", "2")]).await;
    let client = common::Client::connect(&i).await;
    let (routing, recipient, conn) = client.mediated_key(&i).await;
    for n in 0..2 {
        let (body, _) =
            common::forward_for(&routing, recipient.verkey(), format!("{n}").as_bytes());
        assert_eq!(i.post(body).await.0, 202);
    }
    let (body, _) = common::forward_for(&routing, recipient.verkey(), b"over");
    let (status, err) = i.post(body).await;
    assert_eq!(status, 507, "{err}");
    assert_eq!(err["error"], "queue_full");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 messages"),
        "{err}"
    );
    // The sender (anyone) is not told whose queue it is.
    assert!(!err.to_string().contains(conn.as_str()), "{err}");
    let held = i
        .mediator
        .stores()
        .queue
        .take(&conn, 10, None)
        .await
        .unwrap();
    assert_eq!(held.len(), 2, "the refused Forward was stored");
    still_serving(&i).await;
    // Room again once the client acknowledged one.
    i.mediator
        .stores()
        .queue
        .remove(&conn, &[held[0].id.clone()])
        .await
        .unwrap();
    let (body, _) = common::forward_for(&routing, recipient.verkey(), b"again");
    assert_eq!(i.post(body).await.0, 202);
    i.stop().await;
}
