//! The listener under hostile clients, on real loopback sockets: idle connections are closed
//! within the header timeout while the probes answer, a full instance still answers its probes
//! from the health reserve, per-address rate limits (and who the client is behind a proxy), the
//! cap on WebSockets, slow bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{
    process::Proc,
    raw::{self, addr_of, closed_within, connect_from, request},
    Instance,
};
use mediator::stats::Limit;
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet, time::Instant};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Opens `n` connections that send nothing, `batch` at a time.
async fn idle_sockets(server: SocketAddr, n: usize, batch: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    while sockets.len() < n {
        let mut opening = JoinSet::new();
        for _ in 0..batch.min(n - sockets.len()) {
            opening.spawn(connect_from(LOCAL, server));
        }
        while let Some(socket) = opening.join_next().await {
            sockets.push(socket.unwrap());
        }
    }
    sockets
}

/// Opens `n` idle connections to `server` (header timeout `timeout`) and checks that the server
/// closes every one of them no earlier than the timeout and no later than `timeout + slack` after
/// its connect, while `/readyz` on fresh connections keeps answering 200. Returns how many probes
/// answered.
///
/// Each socket's clock starts at its own connect: on loopback a connect now and then waits a
/// second for a SYN retransmit (its port pair still in TIME_WAIT from an earlier run).
async fn idle_connections_are_closed(
    server: SocketAddr,
    n: usize,
    timeout: Duration,
    slack: Duration,
) -> usize {
    // Batches of 100 connects: well under the listen backlog, so the kernel never drops a
    // handshake the server has not accepted yet (the server's clock starts at its accept).
    let opener = tokio::spawn(async move {
        let mut waiting = JoinSet::new();
        for _ in 0..n.div_ceil(100) {
            let mut batch = JoinSet::new();
            for _ in 0..100.min(n - waiting.len()) {
                batch.spawn(connect_from(LOCAL, server));
            }
            while let Some(socket) = batch.join_next().await {
                let socket = socket.unwrap();
                waiting.spawn(closed_within(socket, timeout + slack));
            }
        }
        let mut closed = Vec::with_capacity(n);
        while let Some(after) = waiting.join_next().await {
            closed.push(after.unwrap());
        }
        closed
    });
    tokio::pin!(opener);
    // A probe every 50 ms for as long as sockets are open.
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let mut probes = 0;
    let closed = loop {
        tokio::select! {
            closed = &mut opener => break closed.unwrap(),
            _ = every.tick() => {
                let answer = request(LOCAL, server, "GET", "/readyz", &[], b"")
                    .await
                    .expect("/readyz answered while idle sockets are open");
                assert_eq!(answer.status, 200, "{answer:?}");
                probes += 1;
            }
        }
    };
    let open = closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open,
        0,
        "{open} of {n} idle sockets still open {:?} after their connect",
        timeout + slack
    );
    let earliest = closed.iter().flatten().min().unwrap();
    // The wait starts a little after the connect (the batch's join): allow a tenth.
    assert!(
        *earliest >= timeout.mul_f64(0.9),
        "a socket was closed {earliest:?} after its connect, before the header timeout {timeout:?}"
    );
    probes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_within_the_header_timeout_and_probes_answer_meanwhile() {
    raw::raise_fd_limit();
    let i = Instance::start_with(None, &[("MEDIATOR_TRANSPORT__HEADER_TIMEOUT_MS", "1000")]).await;
    let probes = idle_connections_are_closed(
        addr_of(&i.base),
        500,
        Duration::from_millis(1000),
        Duration::from_secs(3),
    )
    .await;
    assert!(probes > 0, "/readyz was probed while the sockets were open");
    assert!(
        i.mediator.stats().refusals(Limit::HeaderTimeout) >= 500,
        "each closed socket is counted as header_timeout"
    );
    // A keep-alive connection that goes idle after a request is closed the same way.
    let mut kept = connect_from(LOCAL, addr_of(&i.base)).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let after = closed_within(kept, Duration::from_secs(5)).await;
    assert!(after.is_some(), "idle keep-alive connection not closed");
    i.stop().await;
}

/// 10,000 idle sockets against the real binary (its own descriptors: the test process holds the
/// client ends only, so both stay under a 20,000 descriptor limit). About 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_are_closed_and_probes_answer_meanwhile() {
    raw::raise_fd_limit();
    let proc = Proc::start_with(
        "hostile-10k",
        "redis://unused",
        "unused:",
        &[
            ("MEDIATOR_STORAGE__BACKEND", "memory"),
            ("MEDIATOR_TRANSPORT__HEADER_TIMEOUT_MS", "2000"),
            ("MEDIATOR_LOG", "warn"),
        ],
    );
    proc.ready().await;
    let probes = idle_connections_are_closed(
        addr_of(&proc.base),
        10_000,
        Duration::from_millis(2000),
        Duration::from_secs(5),
    )
    .await;
    assert!(probes > 0);
}

#[tokio::test]
async fn at_the_connection_cap_probes_are_served_from_the_reserve_and_the_rest_is_refused() {
    raw::raise_fd_limit();
    let i = Instance::start_with(
        None,
        &[
            ("MEDIATOR_TRANSPORT__MAX_CONNECTIONS", "50"),
            ("MEDIATOR_TRANSPORT__HEALTH_RESERVE", "4"),
        ],
    )
    .await;
    let server = addr_of(&i.base);
    // Accepted in order: the probe connection comes after these 50, into the reserve.
    let _idle = idle_sockets(server, 50, 50).await;
    let mut probe = connect_from(LOCAL, server).await;
    for path in ["/healthz", "/readyz"] {
        let answer = raw::exchange(&mut probe, "GET", path, &[], b"").await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
    }
    let post = raw::exchange(
        &mut probe,
        "POST",
        "/",
        &[("Content-Type", "application/didcomm-envelope-enc")],
        b"{}",
    )
    .await;
    assert_eq!(post.status, 503, "{post:?}");
    assert_eq!(post.header("retry-after"), Some("1"));
    assert!(post.body.contains("\"unavailable\""), "{}", post.body);
    // The rest of the reserve held open too (the probe connection is still open): the next
    // connection is closed without an answer.
    let _reserve = idle_sockets(server, 3, 3).await;
    assert!(
        request(LOCAL, server, "GET", "/healthz", &[], b"")
            .await
            .is_none(),
        "a connection beyond cap + reserve is closed at once"
    );
    assert!(i.mediator.stats().refusals(Limit::Connections) >= 2);
    i.stop().await;
}

/// POSTs a (garbage) envelope from `source`; the status, Retry-After and error code.
async fn post_from(
    server: SocketAddr,
    source: IpAddr,
    forwarded_for: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut headers = vec![("Content-Type", "application/didcomm-envelope-enc")];
    if let Some(xff) = forwarded_for {
        headers.push(("X-Forwarded-For", xff));
    }
    let answer = request(source, server, "POST", "/", &headers, b"not an envelope")
        .await
        .expect("an answer");
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    (
        answer.status,
        answer.header("retry-after").map(str::to_owned),
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn messages_over_the_rate_get_429_per_address_and_forwarded_for_counts_only_from_trusted_proxies(
) {
    // A burst of five, then one message every 5 s: the few milliseconds this test takes do not
    // give a token back.
    let i = Instance::start_with(
        None,
        &[
            ("MEDIATOR_RATE_LIMIT__MESSAGES_PER_SECOND", "0.2"),
            ("MEDIATOR_RATE_LIMIT__MESSAGES_BURST", "5"),
            ("MEDIATOR_RATE_LIMIT__TRUSTED_PROXIES", "127.0.0.4"),
        ],
    )
    .await;
    let server = addr_of(&i.base);
    for n in 1..=5 {
        let (status, _, code) = post_from(server, LOCAL, None).await;
        assert_eq!((status, code.as_str()), (400, "bad_envelope"), "POST {n}");
    }
    let (status, retry, code) = post_from(server, LOCAL, None).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    // Another client is served meanwhile.
    let (status, _, _) = post_from(server, loopback(2), None).await;
    assert_eq!(status, 400, "127.0.0.2 has its own bucket");
    assert_eq!(post_from(server, LOCAL, None).await.0, 429);

    // An untrusted peer cannot pick its bucket by X-Forwarded-For.
    for n in 0..5 {
        let xff = format!("198.51.100.{n}");
        assert_eq!(post_from(server, loopback(3), Some(&xff)).await.0, 400);
    }
    assert_eq!(
        post_from(server, loopback(3), Some("198.51.100.99"))
            .await
            .0,
        429,
        "X-Forwarded-For from an untrusted peer is ignored"
    );

    // Through the trusted proxy 127.0.0.4, each forwarded client has its own bucket.
    for _ in 0..5 {
        assert_eq!(
            post_from(server, loopback(4), Some("203.0.113.7")).await.0,
            400
        );
    }
    assert_eq!(
        post_from(server, loopback(4), Some("203.0.113.7")).await.0,
        429
    );
    assert_eq!(
        post_from(server, loopback(4), Some("203.0.113.8")).await.0,
        400,
        "X-Forwarded-For from a trusted proxy names the client"
    );
    assert_eq!(i.mediator.stats().refusals(Limit::RateMessages), 4);
    i.stop().await;
}

#[tokio::test]
async fn new_connections_over_the_rate_are_closed() {
    let i = Instance::start_with(
        None,
        &[
            ("MEDIATOR_RATE_LIMIT__CONNECTIONS_PER_SECOND", "0.2"),
            ("MEDIATOR_RATE_LIMIT__CONNECTIONS_BURST", "3"),
        ],
    )
    .await;
    let server = addr_of(&i.base);
    for _ in 0..3 {
        let answer = request(LOCAL, server, "GET", "/healthz", &[], b"").await;
        assert_eq!(answer.map(|a| a.status), Some(200));
    }
    assert!(
        request(LOCAL, server, "GET", "/healthz", &[], b"")
            .await
            .is_none(),
        "the fourth connection in a second is closed unanswered"
    );
    let other = request(loopback(2), server, "GET", "/healthz", &[], b"").await;
    assert_eq!(other.map(|a| a.status), Some(200));
    assert_eq!(i.mediator.stats().refusals(Limit::RateConnections), 1);
    i.stop().await;
}

#[tokio::test]
async fn websockets_beyond_the_instance_cap_get_503_until_one_closes() {
    use tokio_tungstenite::tungstenite::{http::StatusCode, Error};
    let i = Instance::start_with(None, &[("MEDIATOR_WEBSOCKET__MAX_SESSIONS", "3")]).await;
    let url = i.base.replacen("http://", "ws://", 1);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    match tokio_tungstenite::connect_async(&url).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        other => panic!("fourth WebSocket: {:?}", other.map(|(_, r)| r.status())),
    }
    assert_eq!(i.mediator.stats().refusals(Limit::WebSockets), 1);
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    // The place frees when the server's session task ends: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => {
                open.push(ws);
                break;
            }
            Err(Error::Http(r)) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    Instant::now() < deadline,
                    "the closed socket's place never freed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err}"),
        }
    }
    i.stop().await;
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let i = Instance::start_with(None, &[("MEDIATOR_TRANSPORT__BODY_TIMEOUT_MS", "300")]).await;
    let mut stream = connect_from(LOCAL, addr_of(&i.base)).await;
    // 100 bytes announced, 10 sent, then nothing.
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/didcomm-envelope-enc\r\n\
              Content-Length: 100\r\nConnection: close\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let answer = raw::read_response(&mut stream).await.unwrap();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("body_timeout"), "{}", answer.body);
    assert_eq!(i.mediator.stats().refusals(Limit::BodyTimeout), 1);
    i.stop().await;
}

#[tokio::test]
async fn websocket_frames_and_upgrades_over_the_rate_are_refused_and_the_socket_stays_open() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{http::StatusCode, Error, Message};
    let i = Instance::start_with(
        None,
        &[
            ("MEDIATOR_RATE_LIMIT__MESSAGES_PER_SECOND", "0.2"),
            ("MEDIATOR_RATE_LIMIT__MESSAGES_BURST", "2"),
            ("MEDIATOR_RATE_LIMIT__UPGRADES_PER_SECOND", "0.2"),
            ("MEDIATOR_RATE_LIMIT__UPGRADES_BURST", "2"),
        ],
    )
    .await;
    let url = i.base.replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        ws.send(Message::text("not an envelope")).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s")
            .expect("socket open")
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&frame.into_data()).unwrap();
        answers.push(answer["error"].as_str().unwrap().to_owned());
    }
    assert_eq!(answers, ["bad_envelope", "bad_envelope", "rate_limited"]);
    // Still open: a ping is answered.
    ws.send(Message::Ping(vec![7].into())).await.unwrap();
    let pong = async {
        loop {
            match ws.next().await.expect("socket open").unwrap() {
                Message::Pong(p) if p[..] == [7] => break,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), pong)
        .await
        .expect("a pong within 10 s");
    // Second upgrade is within the burst of two, the third is not.
    let (_second, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("third upgrade: {:?}", other.map(|(_, r)| r.status())),
    }
    let stats = i.mediator.stats();
    assert_eq!(stats.refusals(Limit::RateMessages), 1);
    assert_eq!(stats.refusals(Limit::RateUpgrades), 1);
    i.stop().await;
}

/// Out of descriptors (EMFILE), the accept loop backs off instead of spinning and logs at most
/// once a second; once the idle sockets are closed by the header timeout it serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_quietly_and_recovers() {
    let proc = Proc::start_with_fd_limit(
        "hostile-emfile",
        "redis://unused",
        "unused:",
        &[
            ("MEDIATOR_STORAGE__BACKEND", "memory"),
            ("MEDIATOR_TRANSPORT__HEADER_TIMEOUT_MS", "2000"),
            // No cap: the descriptors run out first, as they did before the cap existed.
            ("MEDIATOR_TRANSPORT__MAX_CONNECTIONS", "0"),
            ("MEDIATOR_LOG", "warn"),
        ],
        64,
    );
    proc.ready().await;
    let server = addr_of(&proc.base);
    let started = Instant::now();
    // Far more than 64: the kernel completes the handshakes, the mediator cannot accept them.
    let idle = idle_sockets(server, 150, 50).await;
    // Served again once the header timeout closed what it had accepted (and the rest are
    // accepted, timed out and closed in turn): bounded by the backlog drained 2 s at a time.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            request(LOCAL, server, "GET", "/healthz", &[], b""),
        )
        .await;
        if let Ok(Some(answer)) = answer {
            assert_eq!(answer.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
    }
    let took = started.elapsed();
    drop(idle);
    let log = std::fs::read_to_string(&proc.log).unwrap();
    let accept_errors = log.matches("accept failed").count();
    assert!(
        log.contains("Too many open files") && accept_errors >= 1,
        "the mediator ran out of descriptors: {log}"
    );
    // At most one line a second (plus the first).
    assert!(
        accept_errors as f64 <= took.as_secs_f64() + 1.0,
        "{accept_errors} accept-error lines in {took:?}"
    );
}

/// A full instance (cap and reserve held by idle sockets) still answers on its separate metrics
/// listener, which shows the refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_metrics_listener_answers_and_counts_the_refusal() {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let listen = metrics.to_string();
    let proc = Proc::start_with(
        "hostile-metrics",
        "redis://unused",
        "unused:",
        &[
            ("MEDIATOR_STORAGE__BACKEND", "memory"),
            ("MEDIATOR_TRANSPORT__MAX_CONNECTIONS", "20"),
            ("MEDIATOR_TRANSPORT__HEALTH_RESERVE", "2"),
            ("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", listen.as_str()),
        ],
    );
    proc.ready().await;
    let server = addr_of(&proc.base);
    // The readiness check's connection may still hold a place for a moment, so an idle socket
    // may be refused instead: top up until a probe is refused (bounded).
    let mut idle = idle_sockets(server, 22, 22).await;
    let mut full = false;
    for _ in 0..20 {
        if request(LOCAL, server, "GET", "/healthz", &[], b"")
            .await
            .is_none()
        {
            full = true;
            break;
        }
        idle.push(connect_from(LOCAL, server).await);
    }
    assert!(full, "cap and reserve never filled");
    let scrape = request(LOCAL, metrics, "GET", "/metrics", &[], b"")
        .await
        .expect("the metrics listener answers");
    assert_eq!(scrape.status, 200);
    let refused: f64 = scrape
        .body
        .lines()
        .find(|l| {
            l.starts_with("mediator_limits_refused_total{") && l.contains("limit=\"connections\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no connections refusal series: {}", scrape.body));
    assert!(refused >= 1.0, "refused {refused}");
}
