//! Dropping root after the sockets are bound (`[process] user`).
//!
//! glibc's setgid/setuid apply to every thread of the process (it signals
//! each to switch), so workers started before the drop lose root too; the
//! check at the end makes sure of it.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::ffi::CString;
use std::io;

/// Why the process could not become `process.user`.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The user does not exist.
    #[error("process.user {user:?}: no such user")]
    NoSuchUser {
        /// The name configured.
        user: String,
    },
    /// A step of the switch failed.
    #[error(
        "process.user {user:?}: cannot switch to it ({step}): {source}; refusing to keep running as root"
    )]
    Switch {
        /// The name configured.
        user: String,
        /// The call that failed.
        step: &'static str,
        /// What the OS said.
        source: io::Error,
    },
}

/// What the drop did.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Now running as this uid/gid.
    To {
        /// The user id now.
        uid: u32,
        /// The group id now.
        gid: u32,
    },
    /// Not root to begin with: nothing to drop (and nothing could be done).
    NotRoot {
        /// The user id it runs as.
        uid: u32,
    },
}

/// Switch the whole process to `user` (its uid, primary gid, no
/// supplementary groups) if running as root.
pub fn drop_to(user: &str) -> Result<Dropped, PrivilegeError> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid != 0 {
        return Ok(Dropped::NotRoot { uid });
    }
    let (target_uid, target_gid) = lookup(user)?;
    let fail = |step, source| PrivilegeError::Switch {
        user: user.to_string(),
        step,
        source,
    };
    let gid = target_gid;
    // SAFETY: setgroups reads one gid_t from a valid pointer.
    if unsafe { libc::setgroups(1, &gid) } != 0 {
        return Err(fail("setgroups", io::Error::last_os_error()));
    }
    // SAFETY: plain system calls on integers.
    if unsafe { libc::setgid(target_gid) } != 0 {
        return Err(fail("setgid", io::Error::last_os_error()));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(target_uid) } != 0 {
        return Err(fail("setuid", io::Error::last_os_error()));
    }
    // Root must be gone for good: setuid(0) has to fail now.
    // SAFETY: as above.
    let (now_uid, back) = unsafe { (libc::getuid(), libc::setuid(0)) };
    if now_uid != target_uid || (target_uid != 0 && back == 0) {
        return Err(fail(
            "verify",
            io::Error::other("still able to become root"),
        ));
    }
    Ok(Dropped::To {
        uid: target_uid,
        gid: target_gid,
    })
}

fn lookup(user: &str) -> Result<(u32, u32), PrivilegeError> {
    let no_user = || PrivilegeError::NoSuchUser {
        user: user.to_string(),
    };
    let name = CString::new(user).map_err(|_| no_user())?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; zeroed is a valid value for it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives it and its
    // length is passed; result is only read after the call.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(no_user());
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_are_named() {
        // Checked before any switch, whoever runs the test.
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let e = drop_to("no-such-user-ringtracker").unwrap_err();
            assert_eq!(
                e.to_string(),
                "process.user \"no-such-user-ringtracker\": no such user"
            );
        }
        assert!(lookup("root").is_ok());
    }
}
