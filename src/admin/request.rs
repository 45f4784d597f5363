//! One management API request, framed from the bytes a connection sent:
//! the head (httparse) and a body of `Content-Length` bytes, all within
//! the listener's bound. Chunked bodies are refused (a site's HTTP client
//! sends a length for a small JSON body).

/// A whole request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `PUT`, `DELETE`, …
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query, without `?` ("" when none).
    pub query: &'a str,
    /// The token of `Authorization: Bearer <token>`, if sent.
    pub bearer: Option<&'a [u8]>,
    /// The body (empty when none).
    pub body: &'a [u8],
}

/// What the bytes so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The head has not ended yet (and may still, within its bound).
    Partial,
    /// The head is in; the body needs the request to hold this many bytes.
    Body(usize),
    /// A whole request.
    Complete(Request<'a>),
    /// A request that cannot be served: status and why.
    Bad(u16, &'static str),
}

/// Frame the request in `buf`: a head of at most `max_head` bytes, head
/// and body at most `max` (the listener holds no more).
pub fn frame(buf: &[u8], max_head: usize, max: usize) -> Frame<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Frame::Partial,
        Ok(_) => return Frame::Bad(431, "request head too large"),
        Err(_) => return Frame::Bad(400, "malformed HTTP request"),
    };
    let (mut length, mut bearer) = (None, None);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match content_length(h.value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                Some(_) => return Frame::Bad(400, "two different Content-Length headers"),
                None => return Frame::Bad(400, "Content-Length is not a number"),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Frame::Bad(411, "send the body with a Content-Length");
        } else if h.name.eq_ignore_ascii_case("authorization") {
            bearer = bearer_token(h.value);
        }
    }
    let length = length.unwrap_or(0);
    if length > max.saturating_sub(head_len) {
        return Frame::Bad(413, "request body too large");
    }
    let Some(body) = buf.get(head_len..head_len + length) else {
        return Frame::Body(head_len + length);
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Frame::Complete(Request {
        method: req.method.unwrap_or(""),
        path,
        query,
        bearer,
        body,
    })
}

/// A Content-Length value: digits only (no sign, no spaces inside).
fn content_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme's
/// case does not matter).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_whole_once_its_body_is_in() {
        let raw = b"PUT /api/allow/ab?x=1 HTTP/1.1\r\nAuthorization: bearer  tok \r\nContent-Length: 4\r\n\r\n{}";
        assert_eq!(frame(raw, 512, 1024), Frame::Body(raw.len() + 2));
        let mut whole = raw.to_vec();
        whole.extend_from_slice(b"  ");
        let Frame::Complete(r) = frame(&whole, 512, 1024) else {
            panic!("complete")
        };
        assert_eq!((r.method, r.path, r.query), ("PUT", "/api/allow/ab", "x=1"));
        assert_eq!((r.bearer, r.body), (Some(&b"tok"[..]), &b"{}  "[..]));
    }

    #[test]
    fn bounds_and_junk_are_refused() {
        fn f(raw: &[u8]) -> Frame<'_> {
            frame(raw, 64, 1024)
        }
        assert_eq!(f(b"GET / HTTP/1.1\r\n"), Frame::Partial);
        let stuck = frame(b"GET / HTTP/1.1\r\nX: y", 20, 20);
        assert_eq!(stuck, Frame::Bad(431, "request head too large"));
        let long = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'y'; 60], b"\r\n\r\n"].concat();
        assert!(
            matches!(f(&long), Frame::Bad(431, _)),
            "a whole head past its bound"
        );
        let big = b"PUT / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n";
        assert!(matches!(f(big), Frame::Bad(413, _)));
        let huge = b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(f(huge), Frame::Bad(400, _)));
        let signed = b"PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\n";
        assert!(matches!(f(signed), Frame::Bad(400, _)));
        let two = b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(f(two), Frame::Bad(400, _)));
        let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(f(chunked), Frame::Bad(411, _)));
        assert!(matches!(f(b"\x00\x01junk\r\n\r\n"), Frame::Bad(400, _)));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
    }
}
