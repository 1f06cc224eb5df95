//! What the three senders share about HTTP: the client (with its timeout), reading an answer
//! with a size cap, and turning a status or a transport error into a [`PushError`].

use std::time::{Duration, SystemTime};

use reqwest::{header::HeaderMap, StatusCode};

use crate::{ConfigError, Permanent, PushError, Transient};

/// The most of an answer's body we read: every provider's error body is far smaller, and a
/// misbehaving endpoint must not make us buffer without bound.
const MAX_BODY: usize = 64 * 1024;

/// The most of a provider's reason we keep in an error.
const MAX_DETAIL: usize = 200;

/// A client whose every request (connect, send, whole response body) ends within `timeout`.
/// `http2_only`: HTTP/2 by ALPN over TLS, and with prior knowledge (h2c) over `http://`.
pub(crate) fn client(
    provider: &'static str,
    timeout: Duration,
    http2_only: bool,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // Redirects would carry the Authorization header to wherever they point.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("push-notify/", env!("CARGO_PKG_VERSION")));
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .build()
        .map_err(|source| ConfigError::Client { provider, source })
}

/// A transport failure (no complete answer): a timeout or a connection error, both retryable.
/// The URL is removed first: an APNs URL ends with the device token.
pub(crate) fn transport_error(provider: &'static str, error: reqwest::Error) -> PushError {
    let kind = if error.is_timeout() {
        Transient::Timeout
    } else {
        Transient::Connection
    };
    PushError::Retryable {
        provider,
        kind,
        status: None,
        retry_after: None,
        detail: String::new(),
        source: Some(Box::new(error.without_url())),
    }
}

/// The answer's status, headers and (capped) body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends `request` and reads its answer, at most [`MAX_BODY`] bytes of body.
pub(crate) async fn exchange(
    provider: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, PushError> {
    let mut response = request
        .send()
        .await
        .map_err(|e| transport_error(provider, e))?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(provider, e))?
    {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY {
            break;
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// The generic reading of an error status: 429 and 5xx (and 408) are retryable, 401 and 403
/// are our credentials, any other status is a refusal. Token-gone answers are each provider's
/// own and are picked out before this.
pub(crate) fn status_error(
    provider: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    detail: String,
) -> PushError {
    let code = Some(status.as_u16());
    let detail = truncate(detail);
    let retryable = |kind| PushError::Retryable {
        provider,
        kind,
        status: code,
        retry_after: retry_after(headers),
        detail: detail.clone(),
        source: None,
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => retryable(Transient::RateLimited),
        StatusCode::REQUEST_TIMEOUT => retryable(Transient::Timeout),
        s if s.is_server_error() => retryable(Transient::ServerError),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PushError::Failed {
            provider,
            kind: Permanent::Auth,
            status: code,
            detail,
            source: None,
        },
        _ => PushError::Failed {
            provider,
            kind: Permanent::Rejected,
            status: code,
            detail,
            source: None,
        },
    }
}

/// `Retry-After` as delta-seconds or an HTTP-date (a date in the past is no wait).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// At most [`MAX_DETAIL`] characters of a provider's reason.
pub(crate) fn truncate(mut detail: String) -> String {
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL) {
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(retry_after).expect("header"),
        );
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(retry_after(&headers("120")), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&headers(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let wait = retry_after(&headers(&later)).expect("a date");
        assert!(
            wait > Duration::from_secs(90) && wait <= Duration::from_secs(100),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        let reason = |code: u16| {
            status_error(
                "t",
                StatusCode::from_u16(code).expect("status"),
                &none,
                String::new(),
            )
            .reason()
        };
        assert_eq!(reason(429), "rate_limited");
        assert_eq!(reason(408), "timeout");
        assert_eq!(reason(500), "server_error");
        assert_eq!(reason(503), "server_error");
        assert_eq!(reason(401), "auth");
        assert_eq!(reason(403), "auth");
        assert_eq!(reason(400), "rejected");
        assert_eq!(reason(413), "rejected");
        let e = status_error(
            "t",
            StatusCode::SERVICE_UNAVAILABLE,
            &headers("5"),
            "x".into(),
        );
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn long_details_are_cut() {
        let cut = truncate("é".repeat(500));
        assert_eq!(cut.chars().count(), MAX_DETAIL + 1);
        assert_eq!(truncate("short".into()), "short");
    }
}
