//! The config file and the list parsers (info hashes, bans, passkeys):
//! any text is a value or an error naming a line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtracker::config::Config;
use ringtracker::tracker::access;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(config) = Config::from_toml(text, "fuzz.toml") {
        // What loaded also validates (flags are applied over it).
        config.validate().expect("a loaded config is valid");
    }
    for result in [
        access::check_entries(text, 3).err(),
        access::parse_hash_list(text).err(),
        access::parse_ban_list(text).err(),
        access::parse_passkeys(text).err(),
    ] {
        if let Some(e) = result {
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1));
        }
    }
});
