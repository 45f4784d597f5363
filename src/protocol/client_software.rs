//! Which client software a peer id names, for the metrics
//! (`ringtracker_announces_by_client_total{client=…}`): Azureus-style
//! prefixes (`-qB4650-`: a dash, two letters, four version characters, a
//! dash) and the few Shad0w-style and other ones still seen (`M7-4-3--`
//! Mainline, `T03I-----` BitTornado, `A2-1-37-0-` aria2). The table is
//! fixed, and everything else is `other`, so a client cannot make the
//! series grow.

use super::PeerId;

/// Azureus-style codes and their clients' names, common first.
const AZUREUS: [([u8; 2], &str); 40] = [
    (*b"qB", "qBittorrent"),
    (*b"TR", "Transmission"),
    (*b"UT", "uTorrent"),
    (*b"UM", "uTorrent Mac"),
    (*b"UW", "uTorrent Web"),
    (*b"LT", "libtorrent"),
    (*b"lt", "rTorrent"),
    (*b"DE", "Deluge"),
    (*b"BI", "BiglyBT"),
    (*b"AZ", "Vuze"),
    (*b"BT", "BitTorrent"),
    (*b"BC", "BitComet"),
    (*b"BL", "BitLord"),
    (*b"KT", "KTorrent"),
    (*b"FD", "Free Download Manager"),
    (*b"PI", "PicoTorrent"),
    (*b"TX", "Tixati"),
    (*b"WW", "WebTorrent"),
    (*b"WD", "WebTorrent Desktop"),
    (*b"XL", "Xunlei"),
    (*b"SD", "Thunder"),
    (*b"QD", "QQDownload"),
    (*b"FG", "FlashGet"),
    (*b"MG", "MediaGet"),
    (*b"MO", "MonoTorrent"),
    (*b"FW", "FrostWire"),
    (*b"TL", "Tribler"),
    (*b"HL", "Halite"),
    (*b"LW", "LimeWire"),
    (*b"KG", "KGet"),
    (*b"CD", "Enhanced CTorrent"),
    (*b"BF", "Bitflu"),
    (*b"SZ", "Shareaza"),
    (*b"VG", "Vagaa"),
    (*b"BG", "BTG"),
    (*b"AG", "Ares"),
    (*b"A~", "Ares"),
    (*b"ML", "MLDonkey"),
    (*b"GT", "go-torrent"),
    (*b"TT", "TuoTu"),
];

/// Clients named by other prefixes.
const OTHERS: [&str; 3] = ["Mainline", "BitTornado", "aria2"];

/// How many clients there are, `other` included (the counters' slots).
pub const CLIENTS: usize = 1 + AZUREUS.len() + OTHERS.len();

/// One client software, by its slot in the fixed table (0: `other`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSoftware(u8);

impl ClientSoftware {
    /// A peer id no entry of the table names.
    pub const OTHER: ClientSoftware = ClientSoftware(0);

    /// Its slot, below `CLIENTS`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The client at `slot` (`other` past the table).
    pub fn from_index(slot: usize) -> ClientSoftware {
        ClientSoftware(
            u8::try_from(slot)
                .ok()
                .filter(|&s| usize::from(s) < CLIENTS)
                .unwrap_or(0),
        )
    }

    /// Its name, the metrics' label.
    pub fn name(self) -> &'static str {
        match self.index() {
            0 => "other",
            i if i <= AZUREUS.len() => AZUREUS[i - 1].1,
            i => OTHERS
                .get(i - 1 - AZUREUS.len())
                .copied()
                .unwrap_or("other"),
        }
    }
}

/// The client software `peer_id` names.
pub fn client_software(peer_id: &PeerId) -> ClientSoftware {
    let p = &peer_id.0;
    if p[0] == b'-' && p[7] == b'-' {
        let code = [p[1], p[2]];
        return match AZUREUS.iter().position(|(c, _)| *c == code) {
            Some(i) => ClientSoftware(i as u8 + 1),
            None => ClientSoftware::OTHER,
        };
    }
    let other = |name| {
        let i = OTHERS.iter().position(|n| *n == name).unwrap_or(0);
        ClientSoftware((1 + AZUREUS.len() + i) as u8)
    };
    match p {
        [b'M', d, b'-', ..] if d.is_ascii_digit() => other("Mainline"),
        [b'T', d, ..] if d.is_ascii_alphanumeric() && p[6..9] == *b"---" => other("BitTornado"),
        [b'A', b'2', b'-', ..] => other("aria2"),
        _ => ClientSoftware::OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(id: &[u8]) -> &'static str {
        let mut p = [b'x'; 20];
        p[..id.len()].copy_from_slice(id);
        client_software(&PeerId(p)).name()
    }

    #[test]
    fn common_clients_are_named_and_the_rest_is_other() {
        assert_eq!(of(b"-qB4650-"), "qBittorrent");
        assert_eq!(of(b"-TR4060-"), "Transmission");
        assert_eq!(of(b"-LT2090-"), "libtorrent");
        assert_eq!(of(b"-lt0D80-"), "rTorrent");
        assert_eq!(of(b"A2-1-37-0-"), "aria2");
        assert_eq!(of(b"M7-4-3--"), "Mainline");
        assert_eq!(
            of(b"T03I--00"),
            "other",
            "no dashes where BitTornado puts them"
        );
        assert_eq!(of(b"T03I-----"), "BitTornado");
        assert_eq!(of(b"-ZZ0000-"), "other");
        assert_eq!(of(b"\x00\xff-garbage"), "other");
        assert_eq!(of(b"-TR4060x"), "other", "no closing dash");
    }

    #[test]
    fn every_slot_has_a_name_and_slots_are_bounded() {
        let names: std::collections::HashSet<_> = (0..CLIENTS)
            .map(|i| ClientSoftware::from_index(i).name())
            .collect();
        assert_eq!(names.len(), CLIENTS - 1, "Ares has two codes, one name");
        assert_eq!(ClientSoftware::from_index(CLIENTS), ClientSoftware::OTHER);
    }
}
