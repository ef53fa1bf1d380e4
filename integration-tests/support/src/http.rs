//! A small HTTP/1.0 client for loopback servers in tests and benchmarks.
//!
//! One request per connection (HTTP/1.0, so the server closes the connection
//! after the response and never sends it chunked); a bearer token and a body
//! are optional. A server that is not listening (yet) gives an
//! [`ErrorKind::ConnectionRefused`](std::io::ErrorKind::ConnectionRefused)
//! error, which callers waiting for a server to come up can retry on.

use std::io::{Error, ErrorKind, Read, Result, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long to wait for the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a single read or write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A response: its status code, its header lines and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The header lines after the status line, `\r\n`-separated.
    pub headers: String,
    /// The body (invalid UTF-8 replaced).
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if the response has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// `GET path` without a token.
pub fn get(addr: impl ToSocketAddrs, path: &str) -> Result<Response> {
    request(addr, "GET", path, None, "")
}

/// `method path` on the server at `addr`, with `Authorization: Bearer token`
/// if a token is given and `body` as a JSON body if it is not empty. Other
/// methods than `GET` carry what Sluice's REST API asks of state-changing
/// requests (`X-Sluice-Client`, a JSON `Content-Type`), as its CLI does.
pub fn request(
    addr: impl ToSocketAddrs,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<Response> {
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let host = stream.peer_addr()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str("Content-Type: application/json\r\n");
    }
    if method != "GET" {
        head.push_str("X-Sluice-Client: sluice-test\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&String::from_utf8_lossy(&raw))
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("{method} {path} on {host}: not an HTTP response")))
}

/// Connects to the first address of `addr` that accepts, within
/// [`CONNECT_TIMEOUT`] each; the last address's error otherwise.
fn connect(addr: impl ToSocketAddrs) -> Result<TcpStream> {
    let mut last = Error::new(ErrorKind::InvalidInput, "no address to connect to");
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Error::new(e.kind(), format!("connecting to {a}: {e}")),
        }
    }
    Err(last)
}

/// Splits a whole response into status, header lines and body.
fn parse(text: &str) -> Option<Response> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let mut parts = status_line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(Response { status, headers: headers.to_string(), body: body.to_string() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};

    /// Serves one connection with `reply`; returns the request it got.
    fn serve_once(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            // The request ends with its body; our client sends its length.
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            s.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, server)
    }

    #[test]
    fn sends_method_token_and_body_and_reads_status_headers_and_body() {
        let (addr, server) = serve_once("HTTP/1.0 202 Accepted\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}");
        let r = request(addr, "PATCH", "/jobs/x?mode=cancel", Some("s3cret"), "{\"a\":1}").unwrap();
        assert_eq!(r.status, 202);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, "{\"ok\":true}");
        let sent = server.join().unwrap();
        assert!(sent.starts_with("PATCH /jobs/x?mode=cancel HTTP/1.0\r\n"), "{sent}");
        assert!(sent.contains("\r\nAuthorization: Bearer s3cret\r\n"), "{sent}");
        assert!(sent.contains("\r\nContent-Length: 7\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n{\"a\":1}"), "{sent}");
    }

    #[test]
    fn get_sends_no_token_and_no_body() {
        let (addr, server) = serve_once("HTTP/1.1 404 Not Found\r\n\r\n");
        let r = get(addr, "/nope").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, ""));
        let sent = server.join().unwrap();
        assert!(sent.starts_with("GET /nope HTTP/1.0\r\n"), "{sent}");
        assert!(!sent.contains("Authorization") && !sent.contains("Content-Type"), "{sent}");
    }

    #[test]
    fn a_closed_port_is_connection_refused() {
        let port = crate::free_port().unwrap();
        let e = get(("127.0.0.1", port), "/").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn garbage_is_invalid_data() {
        let (addr, server) = serve_once("hello");
        assert_eq!(get(addr, "/").unwrap_err().kind(), ErrorKind::InvalidData);
        server.join().unwrap();
    }
}
