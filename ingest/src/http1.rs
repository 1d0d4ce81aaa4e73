//! The edge's HTTP/1.1 server. Every connection starts here: requests that are plain redirects
//! (`GET|HEAD /{code}` of HTTP/1.1, a code of `[A-Za-z0-9_-]`, no body, nothing to upgrade)
//! are parsed with `httparse` and answered straight into the socket, as many as the client
//! pipelined, without building a `Request`, a `HeaderMap` or a `Response`. At the first request
//! that is anything else (another route, a body, HTTP/1.0, a malformed or over-long head), the
//! connection with the bytes read so far goes to hyper and the router for the rest of its life,
//! so hyper answers every request this path does not understand exactly as it did before.
//!
//! Why: hyper with axum's service stack cost the edge about 1.5× the CPU per redirect of a loop
//! that parses with the same `httparse` and writes the answer itself (bench/README.md).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;
use tracing::Instrument;

use crate::redirect::{self, MAX_CODE_BYTES};
use crate::server::{AppState, Connection, REDIRECT_ROUTE, record};

/// Headers a request on this path may have; one with more goes to hyper (which takes 100).
const MAX_HEADERS: usize = 48;

/// Longest request head this path waits for; a longer one goes to hyper (which answers 431
/// past its own limit).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long a client connection may wait on its client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// Between requests (nothing of the next one read): then the connection closes.
    pub(crate) idle: Duration,
    /// From the first bytes of a request head to its end: then 408 and the connection closes.
    pub(crate) header: Duration,
}

/// Serves `listener` until `shutdown` completes, then stops accepting, lets every connection
/// finish the request in hand (idle keep-alive connections close at once) and returns when all
/// are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (closing_tx, closing) = watch::channel(false);
    // Each connection holds a sender; `recv` answers `None` once they are all gone.
    let (open_tx, mut open) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One write per answer: Nagle's algorithm would only delay it.
        let _ = stream.set_nodelay(true);
        let conn = Conn { state: Arc::clone(&state), router: router.clone(), peer, closing: closing.clone(), timeouts };
        let open = open_tx.clone();
        tokio::spawn(async move {
            conn.serve(stream).await;
            drop(open);
        });
    }
    drop(listener);
    closing_tx.send_replace(true);
    drop(open_tx);
    let _ = open.recv().await;
}

/// What a failed `accept` costs: nothing for the client's own failures; otherwise (out of
/// file descriptors, typically) an error log and a second's pause, as hyper and axum do.
async fn accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One client connection.
struct Conn {
    state: Arc<AppState>,
    router: Router,
    peer: SocketAddr,
    closing: watch::Receiver<bool>,
    timeouts: Timeouts,
}

/// A request head this path answers.
#[derive(Debug, PartialEq, Eq)]
struct Plain<'b> {
    /// `HEAD` (else `GET`).
    head: bool,
    code: &'b str,
    query: Option<&'b str>,
    /// The client asked to close the connection after this answer.
    close: bool,
    /// The head's length in bytes.
    len: usize,
}

/// What the start of the read bytes holds.
#[derive(Debug, PartialEq, Eq)]
enum Head<'b> {
    Plain(Plain<'b>),
    /// Not a whole head yet.
    Partial,
    /// Anything else: hyper's.
    Other,
}

/// Reads the request head at the start of `buf` into `headers`.
fn parse<'h, 'b>(buf: &'b [u8], headers: &'h mut [httparse::Header<'b>]) -> (Head<'b>, &'h [httparse::Header<'b>]) {
    let mut request = httparse::Request::new(headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return (Head::Partial, &[]),
        Err(_) => return (Head::Other, &[]),
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version) else {
        return (Head::Other, &[]);
    };
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return (Head::Other, &[]),
    };
    let Some(target) = path.strip_prefix('/') else { return (Head::Other, &[]) };
    let (code, query) = match target.split_once('?') {
        Some((code, query)) => (code, Some(query)),
        None => (target, None),
    };
    let plain_code = (1..=MAX_CODE_BYTES).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !matches!(code, "healthz" | "readyz");
    if !plain_code || !query.is_none_or(|q| q.bytes().all(query_byte)) {
        return (Head::Other, &[]);
    }
    let mut close = false;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") && !token.is_empty() {
                    return (Head::Other, &[]);
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if header.value.trim_ascii() != b"0" {
                return (Head::Other, &[]);
            }
        } else if ["transfer-encoding", "upgrade", "expect"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            return (Head::Other, &[]);
        }
    }
    (Head::Plain(Plain { head, code, query, close, len }), request.headers)
}

/// A query byte this path takes as it is (RFC 3986 `pchar`, `/`, `?`); anything else (which
/// hyper may refuse or read differently) sends the request to hyper.
fn query_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

impl Conn {
    async fn serve(mut self, mut stream: TcpStream) {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut out: Vec<u8> = Vec::with_capacity(512);
        // The idle and header time-outs share one timer, moved only when it fires early (a
        // timer reset per request would cost more than the redirect's own clock reads).
        let mut last_read = tokio::time::Instant::now();
        // When the request head in `buf` (if any) started arriving.
        let mut head_since = last_read;
        let timer = tokio::time::sleep_until(last_read + self.timeouts.idle);
        tokio::pin!(timer);
        loop {
            let mut start = 0;
            let mut close = false;
            let mut other = false;
            while start < buf.len() && !close {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match parse(&buf[start..], &mut headers) {
                    (Head::Plain(plain), headers) => {
                        self.answer(&plain, headers, &mut out).await;
                        start += plain.len;
                        close = plain.close;
                    }
                    (Head::Partial, _) => break,
                    (Head::Other, _) => {
                        other = true;
                        break;
                    }
                }
            }
            if start > 0 {
                // What is left started arriving in the last read at the earliest.
                head_since = last_read;
            }
            buf.drain(..start);
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            if close || *self.closing.borrow() {
                return;
            }
            if other || buf.len() >= MAX_HEAD_BYTES {
                return self.hand_off(stream, buf).await;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            let was_empty = buf.is_empty();
            let deadline = if was_empty { last_read + self.timeouts.idle } else { head_since + self.timeouts.header };
            // A head cut short may be due before the timer (set for an idle wait): once per
            // such head, never for a request that arrived whole.
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            let mut timed_out = false;
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        last_read = tokio::time::Instant::now();
                        if was_empty {
                            head_since = last_read;
                        }
                    }
                },
                _ = self.closing.wait_for(|closing| *closing) => return,
                () = &mut timer => {
                    if tokio::time::Instant::now() < deadline {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    timed_out = true;
                }
            }
            // Past the deadline: an idle connection just closes, a head cut short gets 408.
            if timed_out {
                if !was_empty {
                    self.time_out(&mut stream).await;
                }
                return;
            }
        }
    }

    /// Answers 408 to a request head that did not arrive within the header time-out.
    async fn time_out(&self, stream: &mut TcpStream) {
        let id = self.state.ids.next_id();
        let error = crate::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request head did not arrive within {} ms", self.timeouts.header.as_millis()),
        );
        let mut out = Vec::with_capacity(256);
        write_error(&mut out, error, id, false, true).await;
        let _ = stream.write_all(&out).await;
        tracing::debug!(request_id = id, "request head timed out");
    }

    /// Answers a plain redirect request into `out`, as the router's `/{code}` route and its
    /// middleware would (the same handler, metrics and log line; a test compares the answers).
    async fn answer(&self, plain: &Plain<'_>, headers: &[httparse::Header<'_>], out: &mut Vec<u8>) {
        let state = &self.state;
        let started = Instant::now();
        let id = state.ids.next_id();
        let span = tracing::info_span!("request", request_id = id, route = REDIRECT_ROUTE);
        let method = if plain.head { Method::HEAD } else { Method::GET };
        let answer = redirect::answer(state, plain.code, plain.query, &method, self.peer.ip(), id, headers);
        let status = match answer.instrument(span.clone()).await {
            Ok(redirect) => {
                write_status(out, redirect.status);
                if let Some(location) = &redirect.location {
                    write_header(out, b"location", location.as_bytes());
                }
                write_header(out, b"cache-control", state.cache_control.as_bytes());
                write_header(out, b"x-request-id", itoa::Buffer::new().format(id).as_bytes());
                finish_head(out, 0, plain.close);
                redirect.status
            }
            Err(error) => write_error(out, error, id, plain.head, plain.close).await,
        };
        span.in_scope(|| tracing::debug!(%method, status = status.as_u16(), "request served"));
        record(&state.redirect_metrics, started, status);
    }

    /// Serves the rest of the connection with hyper and the router, `read` being the bytes
    /// read and not answered yet.
    async fn hand_off(mut self, stream: TcpStream, read: Vec<u8>) {
        let service = Connection::new(Arc::clone(&self.state), self.router.clone(), self.peer)
            .map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new));
        let io = TokioIo::new(Rewind { read: Bytes::from(read), stream });
        // hyper has one time-out for a request head, counted from the connection's start for the
        // first one and, between requests, from the end of the last answer.
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.timeouts.header.max(self.timeouts.idle))
            .serve_connection(io, TowerToHyperService::new(service))
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%error, "connection ended");
                }
                return;
            }
            _ = self.closing.wait_for(|closing| *closing) => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    }
}

/// Writes `error`'s response (its body left out for `head`); returns its status.
async fn write_error(out: &mut Vec<u8>, error: crate::ApiError, id: u64, head: bool, close: bool) -> StatusCode {
    let response = error.into_response();
    let status = response.status();
    let (parts, body) = response.into_parts();
    // An error's body is JSON in memory: collecting it does not wait.
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    write_status(out, status);
    for (name, value) in &parts.headers {
        write_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    write_header(out, b"x-request-id", itoa::Buffer::new().format(id).as_bytes());
    finish_head(out, body.len(), close);
    if !head {
        out.extend_from_slice(&body);
    }
    status
}

/// The status line.
fn write_status(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `content-length`, `connection: close` when closing, `date`, and the blank line.
fn finish_head(out: &mut Vec<u8>, content_length: usize, close: bool) {
    write_header(out, b"content-length", itoa::Buffer::new().format(content_length).as_bytes());
    if close {
        write_header(out, b"connection", b"close");
    }
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let now = SystemTime::now();
        let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if date.0 != second {
            *date = (second, httpdate::fmt_http_date(now));
        }
        write_header(out, b"date", date.1.as_bytes());
    });
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` header's text for the current second (formatted once a second per thread).
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// A connection handed to hyper: the bytes already read come first.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(request: &str) -> Head<'_> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        // The head borrows the request only.
        let (head, _) = parse(request.as_bytes(), &mut headers);
        head
    }

    fn plain(request: &str) -> Plain<'_> {
        match head(request) {
            Head::Plain(plain) => plain,
            other => panic!("{request:?} is not plain: {other:?}"),
        }
    }

    #[test]
    fn plain_redirect_requests_are_this_paths() {
        let r = "GET /abc_-9?utm=x&b=%20/?:@ HTTP/1.1\r\nHost: e\r\nUser-Agent: u\r\nConnection: keep-alive\r\n\r\n";
        let p = plain(r);
        assert_eq!(
            (p.head, p.code, p.query, p.close, p.len),
            (false, "abc_-9", Some("utm=x&b=%20/?:@"), false, r.len())
        );
        let p = plain("HEAD /x HTTP/1.1\r\nconnection: Close\r\ncontent-length: 0\r\n\r\nGET /next");
        assert_eq!((p.head, p.code, p.query, p.close), (true, "x", None, true));
        assert_eq!(plain("GET /x? HTTP/1.1\r\n\r\n").query, Some(""));
    }

    #[test]
    fn everything_else_is_hypers() {
        for request in [
            "POST /abc HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            "GET /abc HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET /healthz HTTP/1.1\r\n\r\n",
            "GET /api/links HTTP/1.1\r\n\r\n",
            "GET /%61bc HTTP/1.1\r\n\r\n",
            "GET /a.b HTTP/1.1\r\n\r\n",
            "GET /abc?q=<x> HTTP/1.1\r\n\r\n",
            "GET /abc HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
            "GET /abc HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET /abc HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            "GET /abc HTTP/1.1\r\nexpect: 100-continue\r\n\r\n",
            "GET /abc HTTP/1.1\r\nbad header\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET http://e/abc HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(head(request), Head::Other, "{request:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_CODE_BYTES + 1));
        assert_eq!(head(&long), Head::Other);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(head(&format!("GET /abc HTTP/1.1\r\n{many}\r\n")), Head::Other);
    }

    #[test]
    fn a_head_cut_short_waits_for_more() {
        for request in ["", "GE", "GET /abc HTTP/1.1\r\n", "GET /abc HTTP/1.1\r\nuser-agent: x\r\n\r"] {
            assert_eq!(head(request), Head::Partial, "{request:?}");
        }
    }

    #[test]
    fn headers_are_read_in_place_case_insensitively() {
        use crate::client::RequestHeaders;
        let request = "GET /abc HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8\r\nReferer: caf\u{e9}\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (_, headers) = parse(request.as_bytes(), &mut headers);
        assert_eq!(headers.text("user-agent"), Some("Mozilla/5.0"));
        assert_eq!(headers.texts("x-forwarded-for").collect::<Vec<_>>(), ["1.2.3.4", "5.6.7.8"]);
        assert_eq!(headers.text("referer"), None, "not visible ASCII, as HeaderValue::to_str");
        assert_eq!(headers.text("accept-language"), None);
    }

    #[test]
    fn answers_are_framed_as_hyper_frames_them() {
        let mut out = Vec::new();
        write_status(&mut out, StatusCode::FOUND);
        write_header(&mut out, b"location", b"https://e.com/");
        finish_head(&mut out, 0, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 302 Found\r\nlocation: https://e.com/\r\ncontent-length: 0\r\nconnection: close\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\n"));
        let mut response = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Response::new(&mut response);
        assert_eq!(parsed.parse(text.as_bytes()).unwrap(), httparse::Status::Complete(text.len()));
    }
}
