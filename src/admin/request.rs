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
    /// More bytes are needed (and may still come within the bound).
    Partial,
    /// A whole request.
    Complete(Request<'a>),
    /// A request that cannot be served: status and why.
    Bad(u16, &'static str),
}

/// Frame the request in `buf`, which the listener holds to `max` bytes.
pub fn frame(buf: &[u8], max: usize) -> Frame<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max => return Frame::Partial,
        Ok(httparse::Status::Partial) => return Frame::Bad(431, "request head too large"),
        Err(_) => return Frame::Bad(400, "malformed HTTP request"),
    };
    let (mut length, mut bearer) = (0usize, None);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
            match parsed {
                Some(n) => length = n,
                None => return Frame::Bad(400, "Content-Length is not a number"),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Frame::Bad(411, "send the body with a Content-Length");
        } else if h.name.eq_ignore_ascii_case("authorization") {
            bearer = h.value.strip_prefix(b"Bearer ").map(<[u8]>::trim_ascii);
        }
    }
    if length > max.saturating_sub(head_len) {
        return Frame::Bad(413, "request body too large");
    }
    let Some(body) = buf.get(head_len..head_len + length) else {
        return Frame::Partial;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_whole_once_its_body_is_in() {
        let raw = b"PUT /api/allow/ab?x=1 HTTP/1.1\r\nAuthorization: Bearer  tok \r\nContent-Length: 4\r\n\r\n{}";
        assert_eq!(frame(raw, 1024), Frame::Partial);
        let mut whole = raw.to_vec();
        whole.extend_from_slice(b"  ");
        let Frame::Complete(r) = frame(&whole, 1024) else {
            panic!("complete")
        };
        assert_eq!((r.method, r.path, r.query), ("PUT", "/api/allow/ab", "x=1"));
        assert_eq!((r.bearer, r.body), (Some(&b"tok"[..]), &b"{}  "[..]));
    }

    #[test]
    fn bounds_and_junk_are_refused() {
        assert_eq!(frame(b"GET / HTTP/1.1\r\n", 1024), Frame::Partial);
        assert_eq!(
            frame(b"GET / HTTP/1.1\r\nX: y", 20),
            Frame::Bad(431, "request head too large")
        );
        let big = b"PUT / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n";
        assert!(matches!(frame(big, 1024), Frame::Bad(413, _)));
        let huge = b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(frame(huge, 1024), Frame::Bad(400, _)));
        let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(frame(chunked, 1024), Frame::Bad(411, _)));
        assert!(matches!(
            frame(b"\x00\x01junk\r\n\r\n", 1024),
            Frame::Bad(400, _)
        ));
    }
}
