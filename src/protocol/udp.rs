//! BEP 15 (UDP tracker protocol) and BEP 41 (UDP options).
//!
//! Requests are parsed from the datagram as it came off the socket, borrowing
//! from it (`Request<'a>`); replies are written into a caller-owned buffer and
//! the functions return how many bytes they wrote. All integers are
//! big-endian. A parse failure says whether the sender may be answered at all
//! (`RequestError::Unanswerable` vs `RequestError::Answerable`): a packet that
//! is not a well-formed request to us is dropped, never answered, so the
//! tracker cannot be used to reflect traffic at a third party.

use arrayvec::ArrayVec;

use super::{Event, InfoHash, PeerId};

/// The magic constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// BEP 15 action: connect.
pub const ACTION_CONNECT: u32 = 0;
/// BEP 15 action: announce.
pub const ACTION_ANNOUNCE: u32 = 1;
/// BEP 15 action: scrape.
pub const ACTION_SCRAPE: u32 = 2;
/// BEP 15 action: error (replies only).
pub const ACTION_ERROR: u32 = 3;

/// Every request starts with connection id, action and transaction id.
pub const HEADER_LEN: usize = 16;
/// An announce without options; BEP 41 options follow from this offset.
pub const ANNOUNCE_LEN: usize = 98;
/// Scrape requests are answered for at most this many info hashes; a request
/// carrying more is answered for its first `MAX_SCRAPE_HASHES` (the reply has
/// no way to name the hashes, so clients match by position, and a short reply
/// still answers the hashes they asked first).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// Bytes before the first peer in an announce reply.
pub const ANNOUNCE_REPLY_HEADER_LEN: usize = 20;
/// Bytes per scrape entry in a scrape reply.
pub const SCRAPE_ENTRY_LEN: usize = 12;
/// The largest scrape reply we write.
pub const MAX_SCRAPE_REPLY_LEN: usize = 8 + MAX_SCRAPE_HASHES * SCRAPE_ENTRY_LEN;
/// The largest URLData (BEP 41) we keep; a longer one is cut here. 255-byte
/// chunks are concatenated, so a path with a 64-character passkey fits many
/// times over.
pub const MAX_URL_DATA: usize = 1024;

/// One parsed request, borrowing from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// A connect: asks for a connection id.
    Connect {
        /// Echoed in the reply.
        transaction_id: u32,
    },
    /// An announce.
    Announce(AnnounceRequest<'a>),
    /// A scrape of up to `MAX_SCRAPE_HASHES` torrents.
    Scrape(ScrapeRequest<'a>),
}

/// A BEP 15 announce, as sent (the fields in wire order).
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct AnnounceRequest<'a> {
    /// The id a connect issued (checked against the source address).
    pub connection_id: u64,
    /// Echoed in the reply.
    pub transaction_id: u32,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The client's peer id.
    pub peer_id: PeerId,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes left to download (0: a seeder).
    pub left: u64,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// The announce's event.
    pub event: Event,
    /// The `ip` field as sent (0 = use the source address). Only honoured
    /// when the operator allows it: see `TrackerConfig::allow_ip_param`.
    pub ip: u32,
    /// The client's key (unused: peers are identified by address).
    pub key: u32,
    /// Peers wanted (-1: the default).
    pub num_want: i32,
    /// The port the client listens on.
    pub port: u16,
    /// Everything after byte 98: BEP 41 options, parsed on demand.
    pub options: &'a [u8],
}

/// A BEP 15 scrape: its ids and the info hashes it names.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct ScrapeRequest<'a> {
    /// The id a connect issued (checked against the source address).
    pub connection_id: u64,
    /// Echoed in the reply.
    pub transaction_id: u32,
    /// A whole number of 20-byte hashes, 1 to `MAX_SCRAPE_HASHES` of them.
    hashes: &'a [u8],
}

impl<'a> ScrapeRequest<'a> {
    /// The info hashes, in the order sent.
    pub fn info_hashes(&self) -> impl ExactSizeIterator<Item = InfoHash> + 'a {
        self.hashes.chunks_exact(20).map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            InfoHash(h)
        })
    }

    /// How many info hashes.
    pub fn len(&self) -> usize {
        self.hashes.len() / 20
    }

    /// Whether it names none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Why a datagram was not parsed into a request.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RequestError {
    /// Not a request we can answer: dropped without a reply.
    Unanswerable(DropReason),
    /// A request with a connection id and transaction id but a bad body: it
    /// gets an error packet if (and only if) its connection id is valid.
    Answerable {
        /// The request's connection id (checked before any reply).
        connection_id: u64,
        /// Echoed in the error packet.
        transaction_id: u32,
        /// What the error packet says.
        message: &'static str,
    },
}

/// Why a datagram got no reply at all. Every one of these is counted.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum DropReason {
    /// Shorter than the 16 bytes every request starts with.
    TooShort,
    /// A connect request without the protocol magic.
    BadMagic,
    /// An action that no client sends (error, or unknown).
    UnknownAction,
    /// An announce shorter than 98 bytes.
    ShortAnnounce,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn array20_at(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}

/// What the batch pipeline needs of an announce ahead of the full parse
/// (`AnnouncePeek`), read straight off the wire. `None` for anything that
/// is not announce-shaped.
pub fn peek_announce(packet: &[u8]) -> Option<AnnouncePeek> {
    if packet.len() < ANNOUNCE_LEN || packet[8..12] != ACTION_ANNOUNCE.to_be_bytes() {
        return None;
    }
    Some(AnnouncePeek {
        info_hash: InfoHash(array20_at(packet, 16)),
        left: u64_at(packet, 64),
        num_want: u32_at(packet, 92) as i32,
        port: u16_at(packet, 96),
    })
}

/// The fields of an announce the batch pipeline reads before the announce
/// is parsed (`peek_announce`): which torrent entry and which of its peers
/// the answer will touch. Read at fixed offsets; nothing is checked but
/// the length and the action, so it only ever guides a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncePeek {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Bytes left (0: a seeder: which set the peer sits in).
    pub left: u64,
    /// Peers wanted (which reply windows).
    pub num_want: i32,
    /// The port the client listens on.
    pub port: u16,
}

/// Parse one datagram. Trailing bytes after a connect request are ignored
/// (some clients pad); after an announce they are BEP 41 options.
pub fn parse_request(packet: &[u8]) -> Result<Request<'_>, RequestError> {
    if packet.len() < HEADER_LEN {
        return Err(RequestError::Unanswerable(DropReason::TooShort));
    }
    let connection_id = u64_at(packet, 0);
    let action = u32_at(packet, 8);
    let transaction_id = u32_at(packet, 12);
    match action {
        ACTION_CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(RequestError::Unanswerable(DropReason::BadMagic));
            }
            Ok(Request::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            if packet.len() < ANNOUNCE_LEN {
                return Err(RequestError::Unanswerable(DropReason::ShortAnnounce));
            }
            let event = match u32_at(packet, 80) {
                0 => Event::None,
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => {
                    return Err(RequestError::Answerable {
                        connection_id,
                        transaction_id,
                        message: "invalid event",
                    });
                }
            };
            Ok(Request::Announce(AnnounceRequest {
                connection_id,
                transaction_id,
                info_hash: InfoHash(array20_at(packet, 16)),
                peer_id: PeerId(array20_at(packet, 36)),
                downloaded: u64_at(packet, 56),
                left: u64_at(packet, 64),
                uploaded: u64_at(packet, 72),
                event,
                ip: u32_at(packet, 84),
                key: u32_at(packet, 88),
                num_want: u32_at(packet, 92) as i32,
                port: u16_at(packet, 96),
                options: &packet[ANNOUNCE_LEN..],
            }))
        }
        ACTION_SCRAPE => {
            let body = &packet[HEADER_LEN..];
            let message = if body.is_empty() {
                "scrape without info hash"
            } else if !body.len().is_multiple_of(20) {
                "scrape length is not a whole number of info hashes"
            } else {
                let n = (body.len() / 20).min(MAX_SCRAPE_HASHES);
                return Ok(Request::Scrape(ScrapeRequest {
                    connection_id,
                    transaction_id,
                    hashes: &body[..n * 20],
                }));
            };
            Err(RequestError::Answerable {
                connection_id,
                transaction_id,
                message,
            })
        }
        _ => Err(RequestError::Unanswerable(DropReason::UnknownAction)),
    }
}

/// What walking the BEP 41 option list found.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum OptionsStatus {
    /// Every option was well formed (the list ended with EndOfOptions or at
    /// the end of the packet).
    WellFormed,
    /// An option's length ran past the end of the packet: parsing stopped
    /// there and what came before is kept. The announce itself stands.
    Truncated,
    /// URLData was longer than `MAX_URL_DATA`; the rest was cut.
    UrlDataTooLong,
}

/// Collect the URLData (option type 2) chunks of a BEP 41 option list into
/// `out`, concatenated in order. NOP (1) is skipped, EndOfOptions (0) ends
/// the list, any other type is skipped by its length byte.
pub fn url_data(options: &[u8], out: &mut ArrayVec<u8, MAX_URL_DATA>) -> OptionsStatus {
    const END_OF_OPTIONS: u8 = 0;
    const NOP: u8 = 1;
    const URL_DATA: u8 = 2;
    let mut status = OptionsStatus::WellFormed;
    let mut at = 0;
    while at < options.len() {
        let kind = options[at];
        at += 1;
        match kind {
            END_OF_OPTIONS => break,
            NOP => continue,
            _ => {}
        }
        let Some(&len) = options.get(at) else {
            return OptionsStatus::Truncated;
        };
        at += 1;
        let Some(value) = options.get(at..at + len as usize) else {
            return OptionsStatus::Truncated;
        };
        at += len as usize;
        if kind == URL_DATA {
            let room = out.remaining_capacity();
            if value.len() > room {
                status = OptionsStatus::UrlDataTooLong;
            }
            out.try_extend_from_slice(&value[..value.len().min(room)])
                .expect("bounded by remaining capacity");
        }
    }
    status
}

/// Write a connect reply; returns its length (16).
pub fn write_connect(out: &mut [u8], transaction_id: u32, connection_id: u64) -> usize {
    out[0..4].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    out[8..16].copy_from_slice(&connection_id.to_be_bytes());
    16
}

/// Write the 20-byte head of an announce reply (leechers before seeders, as
/// BEP 15 has it). The peers, written by the swarm, follow from byte 20.
pub fn write_announce_header(
    out: &mut [u8],
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
) -> usize {
    out[0..4].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    out[8..12].copy_from_slice(&interval.to_be_bytes());
    out[12..16].copy_from_slice(&leechers.to_be_bytes());
    out[16..20].copy_from_slice(&seeders.to_be_bytes());
    ANNOUNCE_REPLY_HEADER_LEN
}

/// Write the head of a scrape reply; entries follow with `write_scrape_entry`.
pub fn write_scrape_header(out: &mut [u8], transaction_id: u32) -> usize {
    out[0..4].copy_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    8
}

/// One scrape entry (seeders, completed, leechers) at `out[0..12]`.
pub fn write_scrape_entry(out: &mut [u8], seeders: u32, completed: u32, leechers: u32) {
    out[0..4].copy_from_slice(&seeders.to_be_bytes());
    out[4..8].copy_from_slice(&completed.to_be_bytes());
    out[8..12].copy_from_slice(&leechers.to_be_bytes());
}

/// Write an error reply: the message runs to the end of the datagram.
pub fn write_error(out: &mut [u8], transaction_id: u32, message: &str) -> usize {
    out[0..4].copy_from_slice(&ACTION_ERROR.to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    let n = message.len().min(out.len() - 8);
    out[8..8 + n].copy_from_slice(&message.as_bytes()[..n]);
    8 + n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(connection_id: u64, action: u32, tid: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&connection_id.to_be_bytes());
        p.extend_from_slice(&action.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p
    }

    fn announce_packet(event: u32, num_want: i32, options: &[u8]) -> Vec<u8> {
        let mut p = header(0xdead_beef, ACTION_ANNOUNCE, 7);
        p.extend_from_slice(&[0xaa; 20]);
        p.extend_from_slice(&[0xbb; 20]);
        p.extend_from_slice(&11u64.to_be_bytes());
        p.extend_from_slice(&22u64.to_be_bytes());
        p.extend_from_slice(&33u64.to_be_bytes());
        p.extend_from_slice(&event.to_be_bytes());
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend_from_slice(&0x55u32.to_be_bytes());
        p.extend_from_slice(&num_want.to_be_bytes());
        p.extend_from_slice(&6881u16.to_be_bytes());
        assert_eq!(p.len(), ANNOUNCE_LEN);
        p.extend_from_slice(options);
        p
    }

    #[test]
    fn short_packets_are_dropped() {
        for len in [0, 1, 15] {
            let p = vec![0u8; len];
            assert_eq!(
                parse_request(&p),
                Err(RequestError::Unanswerable(DropReason::TooShort)),
                "len {len}"
            );
        }
    }

    #[test]
    fn connect_needs_magic() {
        let p = header(PROTOCOL_ID, ACTION_CONNECT, 99);
        assert_eq!(p.len(), 16);
        assert_eq!(
            parse_request(&p),
            Ok(Request::Connect { transaction_id: 99 })
        );
        let p = header(PROTOCOL_ID + 1, ACTION_CONNECT, 99);
        assert_eq!(
            parse_request(&p),
            Err(RequestError::Unanswerable(DropReason::BadMagic))
        );
    }

    #[test]
    fn connect_with_padding_is_accepted() {
        let mut p = header(PROTOCOL_ID, ACTION_CONNECT, 1);
        p.resize(1500, 0);
        assert_eq!(
            parse_request(&p),
            Ok(Request::Connect { transaction_id: 1 })
        );
    }

    #[test]
    fn unknown_and_error_actions_are_dropped() {
        for action in [ACTION_ERROR, 4, 0xffff_ffff] {
            let p = header(1, action, 1);
            assert_eq!(
                parse_request(&p),
                Err(RequestError::Unanswerable(DropReason::UnknownAction))
            );
        }
    }

    #[test]
    fn announce_of_97_bytes_is_dropped_98_parsed() {
        let p = announce_packet(0, -1, &[]);
        assert_eq!(
            parse_request(&p[..97]),
            Err(RequestError::Unanswerable(DropReason::ShortAnnounce))
        );
        let Ok(Request::Announce(a)) = parse_request(&p) else {
            panic!("announce expected");
        };
        assert_eq!(a.connection_id, 0xdead_beef);
        assert_eq!(a.transaction_id, 7);
        assert_eq!(a.info_hash, InfoHash([0xaa; 20]));
        assert_eq!(a.peer_id, PeerId([0xbb; 20]));
        assert_eq!((a.downloaded, a.left, a.uploaded), (11, 22, 33));
        assert_eq!(a.event, Event::None);
        assert_eq!(a.ip, 0x0102_0304);
        assert_eq!(a.key, 0x55);
        assert_eq!(a.num_want, -1);
        assert_eq!(a.port, 6881);
        assert!(a.options.is_empty());
    }

    #[test]
    fn announce_events_and_bad_event() {
        for (raw, ev) in [
            (0, Event::None),
            (1, Event::Completed),
            (2, Event::Started),
            (3, Event::Stopped),
        ] {
            let p = announce_packet(raw, 0, &[]);
            let Ok(Request::Announce(a)) = parse_request(&p) else {
                panic!()
            };
            assert_eq!(a.event, ev);
        }
        let p = announce_packet(4, 0, &[]);
        assert_eq!(
            parse_request(&p),
            Err(RequestError::Answerable {
                connection_id: 0xdead_beef,
                transaction_id: 7,
                message: "invalid event"
            })
        );
    }

    #[test]
    fn announce_of_1500_bytes_keeps_options() {
        let p = announce_packet(2, 50, &[1u8; 1500 - ANNOUNCE_LEN]);
        let Ok(Request::Announce(a)) = parse_request(&p) else {
            panic!()
        };
        assert_eq!(a.options.len(), 1500 - ANNOUNCE_LEN);
        let mut url = ArrayVec::new();
        assert_eq!(url_data(a.options, &mut url), OptionsStatus::WellFormed);
        assert!(url.is_empty());
    }

    fn scrape_packet(n: usize) -> Vec<u8> {
        let mut p = header(5, ACTION_SCRAPE, 8);
        for i in 0..n {
            p.extend_from_slice(&[i as u8; 20]);
        }
        p
    }

    #[test]
    fn scrape_counts() {
        assert_eq!(
            parse_request(&scrape_packet(0)),
            Err(RequestError::Answerable {
                connection_id: 5,
                transaction_id: 8,
                message: "scrape without info hash"
            })
        );
        for n in [1, 74] {
            let p = scrape_packet(n);
            let Ok(Request::Scrape(s)) = parse_request(&p) else {
                panic!()
            };
            assert_eq!(s.len(), n);
            let hashes: Vec<_> = s.info_hashes().collect();
            assert_eq!(hashes[n - 1], InfoHash([(n - 1) as u8; 20]));
        }
        let p = scrape_packet(75);
        let Ok(Request::Scrape(s)) = parse_request(&p) else {
            panic!()
        };
        assert_eq!(s.len(), MAX_SCRAPE_HASHES, "answers the first 74");
        let mut p = scrape_packet(2);
        p.pop();
        assert!(matches!(
            parse_request(&p),
            Err(RequestError::Answerable { .. })
        ));
    }

    #[test]
    fn options_concatenate_url_data_and_skip_the_rest() {
        let mut opts = vec![1, 2, 5];
        opts.extend_from_slice(b"/abc/");
        opts.extend_from_slice(&[0x77, 3, 9, 9, 9]); // unknown type, skipped
        opts.extend_from_slice(&[2, 8]);
        opts.extend_from_slice(b"announce");
        opts.extend_from_slice(&[2, 0]); // empty chunk is legal
        opts.extend_from_slice(&[0, 2, 3, b'x', b'y', b'z']); // after EndOfOptions: ignored
        let mut url = ArrayVec::new();
        assert_eq!(url_data(&opts, &mut url), OptionsStatus::WellFormed);
        assert_eq!(&url[..], b"/abc/announce");
    }

    #[test]
    fn bep41_example() {
        let mut opts = vec![2, 0x0c];
        opts.extend_from_slice(b"/dir?a=b&c=d");
        opts.extend_from_slice(&[1, 1, 0]);
        let mut url = ArrayVec::new();
        assert_eq!(url_data(&opts, &mut url), OptionsStatus::WellFormed);
        assert_eq!(&url[..], b"/dir?a=b&c=d");
    }

    #[test]
    fn truncated_options_keep_what_came_before() {
        let mut url = ArrayVec::new();
        assert_eq!(
            url_data(&[2, 3, b'a', b'b', b'c', 2, 10, b'd'], &mut url),
            OptionsStatus::Truncated
        );
        assert_eq!(&url[..], b"abc");
        let mut url = ArrayVec::new();
        assert_eq!(url_data(&[2], &mut url), OptionsStatus::Truncated);
        assert_eq!(url_data(&[0x40], &mut url), OptionsStatus::Truncated);
        assert!(url.is_empty());
    }

    #[test]
    fn oversized_url_data_is_cut() {
        let mut opts = Vec::new();
        for _ in 0..5 {
            opts.extend_from_slice(&[2, 255]);
            opts.extend_from_slice(&[b'k'; 255]);
        }
        let mut url = ArrayVec::new();
        assert_eq!(url_data(&opts, &mut url), OptionsStatus::UrlDataTooLong);
        assert_eq!(url.len(), MAX_URL_DATA);
    }

    #[test]
    fn announce_with_malformed_options_still_parses() {
        let p = announce_packet(2, 10, &[2, 200, b'x']);
        let Ok(Request::Announce(a)) = parse_request(&p) else {
            panic!()
        };
        let mut url = ArrayVec::new();
        assert_eq!(url_data(a.options, &mut url), OptionsStatus::Truncated);
    }

    /// The batch pipeline's peek reads what the parse would, and nothing
    /// that is not announce-shaped.
    #[test]
    fn a_peek_agrees_with_the_parse() {
        let p = announce_packet(2, 10, &[]);
        let Ok(Request::Announce(a)) = parse_request(&p) else {
            panic!()
        };
        let peek = peek_announce(&p).expect("an announce");
        assert_eq!(
            (peek.info_hash, peek.left, peek.num_want, peek.port),
            (a.info_hash, a.left, a.num_want, a.port)
        );
        assert_eq!(peek_announce(&p[..ANNOUNCE_LEN - 1]), None);
        let mut connect = p.clone();
        connect[8..12].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(peek_announce(&connect), None);
    }

    #[test]
    fn reply_layouts() {
        let mut out = [0u8; 64];
        assert_eq!(
            write_connect(&mut out, 0x0a0b_0c0d, 0x1122_3344_5566_7788),
            16
        );
        assert_eq!(
            out[..16],
            [
                0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
            ]
        );
        assert_eq!(write_announce_header(&mut out, 9, 1800, 3, 4), 20);
        assert_eq!(
            out[..20],
            [0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 7, 8, 0, 0, 0, 3, 0, 0, 0, 4]
        );
        assert_eq!(write_scrape_header(&mut out, 9), 8);
        write_scrape_entry(&mut out[8..], 1, 2, 3);
        assert_eq!(
            out[..20],
            [0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(write_error(&mut out, 9, "nope"), 12);
        assert_eq!(out[..12], [0, 0, 0, 3, 0, 0, 0, 9, b'n', b'o', b'p', b'e']);
        let mut small = [0u8; 10];
        assert_eq!(write_error(&mut small, 1, "long message"), 10);
    }
}
