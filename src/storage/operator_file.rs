//! Reading a file the operator named (config, lists, passkeys, PEM files,
//! the snapshot):
//! a regular file only, and never more than a bound.
//!
//! `list = "/dev/zero"` must not read until the OOM killer comes, and a
//! FIFO must not hang the start or a SIGHUP reload: the file is opened
//! without blocking (`O_NONBLOCK`, which a FIFO with no writer would
//! otherwise wait on), checked to be a regular file, and read through a
//! `take` of one byte past the bound, so a file that grows while it is read
//! is caught too.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest config or PEM file read.
pub const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// The bytes of the regular file at `path`, at most `limit` of them; `what`
/// names the setting that sets the limit, for the error.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let name = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(io::Error::other(format!("{name}, not a regular file")));
    }
    let too_big = || io::Error::other(format!("larger than {limit} bytes ({what})"));
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// As `read_bounded`, as UTF-8 text.
pub fn read_text_bounded(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    let bytes = read_bounded(path, limit, what)?;
    String::from_utf8(bytes).map_err(|_| io::Error::other("not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rt-opfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let d = dir("bound");
        let f = d.join("list.txt");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_bounded(&f, 10, "k").unwrap(), b"0123456789");
        let e = read_bounded(&f, 9, "access.max_list_bytes").unwrap_err();
        assert_eq!(e.to_string(), "larger than 9 bytes (access.max_list_bytes)");
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "k").unwrap_err();
        assert_eq!(e.to_string(), "a device, not a regular file");
        let e = read_bounded(&d, 1 << 20, "k").unwrap_err();
        assert_eq!(e.to_string(), "a directory, not a regular file");
        std::fs::write(d.join("bin"), [0xff, 0xfe]).unwrap();
        assert!(read_text_bounded(&d.join("bin"), 10, "k").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_not_waited_on() {
        let d = dir("fifo");
        let fifo = d.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let e = read_bounded(&fifo, 1 << 20, "k").unwrap_err();
        assert_eq!(e.to_string(), "a FIFO, not a regular file");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
