//! Protocol tests against a real instance: DID exchange, coordinate mediation, Forward, and
//! pickup 2.0 polling, driven by a minimal client that speaks DIDComm over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{forward_for, Client, Instance};
use didcomm_envelope::{unpack, KeyPair, VerKey};
use serde_json::{json, Value};

#[tokio::test]
async fn connect_mediate_forward_and_pick_up() {
    let i = Instance::start(None).await;
    let client = Client::connect(&i).await;

    let grant = client.mediate().await;
    assert_eq!(
        grant["@type"], "https://didcomm.org/coordinate-mediation/1.0/mediate-grant",
        "{grant}"
    );
    assert_eq!(grant["endpoint"], i.base);
    let routing_key = VerKey::parse(grant["routing_keys"][0].as_str().unwrap()).unwrap();
    assert!(grant["routing_keys"][0]
        .as_str()
        .unwrap()
        .starts_with("did:key:"));

    // A recipient key, registered as did:key; senders address it in base58.
    let recipient = KeyPair::generate().unwrap();
    let did_key = recipient.verkey().to_did_key();
    let response = client.add_keys(&[&did_key]).await;
    assert_eq!(response["updated"][0]["result"], "success", "{response}");
    assert_eq!(response["updated"][0]["recipient_key"], did_key);
    let again = client.add_keys(&[&did_key]).await;
    assert_eq!(again["updated"][0]["result"], "no_change");

    // Two Forwards, from a sender that needs no connection.
    let mut inners = Vec::new();
    for n in 0..2 {
        let (body, inner) = forward_for(
            &routing_key,
            recipient.verkey(),
            format!("{{\"n\":{n}}}").as_bytes(),
        );
        let (status, _) = i.post(body).await;
        assert_eq!(status, 202);
        inners.push(inner);
    }

    let status = client
        .call(&Client::msg("messagepickup/2.0/status-request", json!({})))
        .await
        .unwrap();
    assert_eq!(
        status["@type"],
        "https://didcomm.org/messagepickup/2.0/status"
    );
    assert_eq!(status["message_count"], 2);
    assert!(status["total_bytes"].as_u64().unwrap() > 0);
    assert!(status["oldest_received_time"].is_string());

    let request = Client::msg("messagepickup/2.0/delivery-request", json!({"limit": 10}));
    let delivery = client.call(&request).await.unwrap();
    assert_eq!(
        delivery["@type"], "https://didcomm.org/messagepickup/2.0/delivery",
        "{delivery}"
    );
    assert_eq!(delivery["~thread"]["thid"], request["@id"]);
    let attachments = delivery["~attach"].as_array().unwrap();
    assert_eq!(attachments.len(), 2);
    // Oldest first, exactly the encrypted messages the senders sent.
    for (n, a) in attachments.iter().enumerate() {
        assert_eq!(a["data"]["json"], inners[n]);
        let bytes = serde_json::to_vec(&a["data"]["json"]).unwrap();
        let out = unpack(&bytes, |kid| {
            (kid == recipient.verkey_base58()).then_some(&recipient)
        })
        .unwrap();
        assert_eq!(out.message, format!("{{\"n\":{n}}}").as_bytes());
    }

    // Delivered is not removed: they are in flight until acknowledged (a second request gets a
    // status with nothing waiting, and the store still holds both).
    let again = client
        .call(&Client::msg(
            "messagepickup/2.0/delivery-request",
            json!({"limit": 10}),
        ))
        .await
        .unwrap();
    assert_eq!(
        again["@type"], "https://didcomm.org/messagepickup/2.0/status",
        "{again}"
    );
    let conn = i
        .mediator
        .stores()
        .mediation
        .connection_for_key(recipient.verkey())
        .await
        .unwrap()
        .unwrap();
    let held = i.mediator.stores().queue.status(&conn, None).await.unwrap();
    assert_eq!((held.message_count, held.in_flight), (0, 2));

    let ids: Vec<Value> = attachments.iter().map(|a| a["@id"].clone()).collect();
    let after = client
        .call(&Client::msg(
            "messagepickup/2.0/messages-received",
            json!({"message_id_list": ids}),
        ))
        .await
        .unwrap();
    assert_eq!(
        after["@type"],
        "https://didcomm.org/messagepickup/2.0/status"
    );
    assert_eq!(after["message_count"], 0);

    let empty = client
        .call(&Client::msg(
            "messagepickup/2.0/delivery-request",
            json!({"limit": 10}),
        ))
        .await
        .unwrap();
    assert_eq!(
        empty["@type"], "https://didcomm.org/messagepickup/2.0/status",
        "empty queue answers status"
    );
    i.stop().await;
}

#[tokio::test]
async fn key_of_another_connection_is_client_error_and_forward_reaches_the_owner_only() {
    let i = Instance::start(None).await;
    let alice = Client::connect(&i).await;
    let bob = Client::connect(&i).await;
    alice.mediate().await;
    let grant = bob.mediate().await;
    let routing_key = VerKey::parse(grant["routing_keys"][0].as_str().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    assert_eq!(
        alice.add_keys(&[key.verkey_base58()]).await["updated"][0]["result"],
        "success"
    );
    let taken = bob.add_keys(&[&key.verkey().to_did_key()]).await;
    assert_eq!(taken["updated"][0]["result"], "client_error", "{taken}");
    let bad = bob.add_keys(&["not-a-key"]).await;
    assert_eq!(bad["updated"][0]["result"], "client_error");

    let (body, _) = forward_for(&routing_key, key.verkey(), b"{}");
    assert_eq!(i.post(body).await.0, 202);
    let status_request = Client::msg("messagepickup/2.0/status-request", json!({}));
    assert_eq!(
        alice.call(&status_request).await.unwrap()["message_count"],
        1
    );
    assert_eq!(bob.call(&status_request).await.unwrap()["message_count"], 0);
    i.stop().await;
}

#[tokio::test]
async fn live_delivery_over_http_is_a_problem_report_with_pthid() {
    let i = Instance::start(None).await;
    let client = Client::connect(&i).await;
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    let report = client.call(&change).await.unwrap();
    assert_eq!(
        report["@type"], "https://didcomm.org/notification/1.0/problem-report",
        "{report}"
    );
    assert_eq!(report["~thread"]["pthid"], change["@id"]);
    i.stop().await;
}

#[tokio::test]
async fn trust_ping_discover_features_and_unknown_types() {
    let i = Instance::start(None).await;
    let client = Client::connect(&i).await;
    let ping = Client::msg("trust_ping/1.0/ping", json!({"response_requested": true}));
    let pong = client.call(&ping).await.unwrap();
    assert_eq!(
        pong["@type"],
        "https://didcomm.org/trust_ping/1.0/ping_response"
    );
    assert_eq!(pong["~thread"]["thid"], ping["@id"]);

    let q = client
        .call(&Client::msg("discover-features/2.0/queries", json!({"queries": [{"feature-type": "protocol", "match": "https://didcomm.org/messagepickup/*"}]})))
        .await
        .unwrap();
    let disclosed: Vec<&str> = q["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        disclosed,
        [
            "https://didcomm.org/messagepickup/1.0",
            "https://didcomm.org/messagepickup/2.0"
        ]
    );
    let q1 = client
        .call(&Client::msg(
            "discover-features/1.0/query",
            json!({"query": "https://didcomm.org/coordinate-mediation/*"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        q1["protocols"][0]["pid"],
        "https://didcomm.org/coordinate-mediation/1.0"
    );

    // A minor version we do not know is still understood; an unknown protocol gets a report.
    let pong = client
        .call(&Client::msg("trust_ping/1.3/ping", json!({})))
        .await
        .unwrap();
    assert_eq!(
        pong["@type"],
        "https://didcomm.org/trust_ping/1.0/ping_response"
    );
    let unknown = client
        .call(&Client::msg("made-up/1.0/thing", json!({})))
        .await
        .unwrap();
    assert_eq!(
        unknown["@type"],
        "https://didcomm.org/notification/1.0/problem-report"
    );
    assert_eq!(unknown["description"]["code"], "unsupported-message-type");

    // The legacy did:sov prefix is answered in kind.
    let mut legacy = Client::msg("trust_ping/1.0/ping", json!({}));
    legacy["@type"] = Value::from("did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/trust_ping/1.0/ping");
    let pong = client.call(&legacy).await.unwrap();
    assert_eq!(
        pong["@type"],
        "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/trust_ping/1.0/ping_response"
    );
    i.stop().await;
}

#[tokio::test]
async fn keylist_query_pages() {
    let i = Instance::start(None).await;
    let client = Client::connect(&i).await;
    client.mediate().await;
    let keys: Vec<String> = (0..5)
        .map(|_| KeyPair::generate().unwrap().verkey().to_did_key())
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    client.add_keys(&refs).await;
    let page = client
        .call(&Client::msg(
            "coordinate-mediation/1.0/keylist-query",
            json!({"paginate": {"limit": 2, "offset": 1}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        page["@type"],
        "https://didcomm.org/coordinate-mediation/1.0/keylist"
    );
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    assert_eq!(page["keys"][0]["recipient_key"], keys[1]);
    assert_eq!(page["pagination"]["remaining"], 2);
    i.stop().await;
}

#[tokio::test]
async fn mediation_can_be_configured_to_deny_and_keys_then_are_refused() {
    let i = Instance::start_with(None, &[("MEDIATOR_MEDIATION__GRANT", "false")]).await;
    let client = Client::connect(&i).await;
    let deny = client.mediate().await;
    assert_eq!(
        deny["@type"], "https://didcomm.org/coordinate-mediation/1.0/mediate-deny",
        "{deny}"
    );
    let key = KeyPair::generate().unwrap();
    let report = client.add_keys(&[key.verkey_base58()]).await;
    assert_eq!(
        report["@type"], "https://didcomm.org/notification/1.0/problem-report",
        "{report}"
    );
    assert!(i
        .mediator
        .stores()
        .mediation
        .connection_for_key(key.verkey())
        .await
        .unwrap()
        .is_none());
    i.stop().await;
}
