//! Raw TCP clients for the transport tests: sockets from a chosen loopback source address, one
//! HTTP/1.1 request written by hand, waiting for the server to close a socket.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    time::Instant,
};

/// Raises this test process's open-file soft limit to its hard limit (an in-process server and
/// its clients both hold a descriptor per connection).
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}

/// The address of a server whose base URL is `http://host:port`.
pub fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://")
        .parse()
        .expect("base URL is http://ip:port")
}

/// A TCP connection to `server` from `source` (any address of 127.0.0.0/8 works on Linux, so
/// tests can be several clients).
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    if source == server.ip() {
        // No bind: binding to port 0 first makes the kernel search for a port free for any
        // destination, which is slow once thousands are in use.
        return TcpStream::connect(server).await.unwrap();
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// A response read to its end: status and everything after the status line.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Sends `method path` (with `headers` lines and `body`) from `source` on a new connection that
/// closes after the response; the response within 10 s. `None`: the server closed the
/// connection without answering.
pub async fn request(
    source: IpAddr,
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<RawResponse> {
    let mut stream = connect_from(source, server).await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    // A server that closed at once may reset the write: that is "no answer" too.
    if stream.write_all(&out).await.is_err() {
        return None;
    }
    read_response(&mut stream).await
}

/// Reads one response to the end of the connection, within 10 s.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the response (or a close) within 10 s");
    if read.is_err() && raw.is_empty() {
        return None; // reset
    }
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    Some(RawResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// Waits (at most `limit`) for the server to close `stream`, which sends nothing; the time it
/// took, or `None` if the socket was still open at `limit` (anything the server writes first is
/// read and ignored).
pub async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(start + limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            // hyper may answer a header timeout with a 408 before it closes: read on to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends one request on a kept-alive `stream` and reads its response by its Content-Length
/// (within 10 s); the connection stays open.
pub async fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await.unwrap();
    let read = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let response = RawResponse {
                status: head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("a status line"),
                head,
                body: String::new(),
            };
            let length: usize = response
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("a Content-Length");
            if raw.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
                return RawResponse { body, ..response };
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}
