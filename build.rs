//! Records the git revision the binary is built from, for `--version`
//! ("unknown" where there is no git or no repository: a crates.io or
//! tarball build). Nothing else is generated: `cargo install` needs no
//! other step.

use std::path::Path;
use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RINGTRACKER_GIT_REV={rev}");
    // A commit moves the branch HEAD names; a checkout moves HEAD.
    let head = Path::new(".git/HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        let text = std::fs::read_to_string(head).unwrap_or_default();
        if let Some(branch) = text.strip_prefix("ref: ") {
            let r = Path::new(".git").join(branch.trim());
            if r.exists() {
                println!("cargo:rerun-if-changed={}", r.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
