//! The private X server's authorization cookie: the server starts with `-auth FILE` and admits
//! only clients that present the cookie in it (Chromium, and ximagesrc in the worker), so no
//! other local user or process can read the screen or inject input.
//!
//! The file is the worker's `XAUTHORITY`, a path its supervisor names when it spawns it
//! (libX11, inside ximagesrc, reads that variable of the worker's own environment, which
//! cannot safely be changed once threads run). One entry, MIT-MAGIC-COOKIE-1, for any
//! address and display (`FamilyWild`, empty display number): the display number is chosen by
//! the server after it starts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::warn;

pub const ENV: &str = "XAUTHORITY";

/// libXau's family that matches any address.
const FAMILY_WILD: u16 = 0xffff;
const PROTOCOL: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// A cookie file, removed when dropped.
pub struct Cookie {
    path: PathBuf,
}

impl Cookie {
    /// A fresh random cookie in the worker's `XAUTHORITY` file (created here, owner-only).
    pub fn create() -> Result<Self> {
        let path = match std::env::var_os(ENV) {
            Some(p) => PathBuf::from(p),
            None => {
                // Only ximagesrc needs the variable; a process without it cannot read the screen.
                warn!("{ENV} is not set: the screen is readable by Chromium only");
                std::env::temp_dir().join(format!("roomcast-xauth-{}", std::process::id()))
            }
        };
        let cookie: [u8; 16] = rand::random();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating the X cookie file {}", path.display()))?;
        f.write_all(&entry(&cookie)).context("writing the X cookie")?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Cookie {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One Xauthority entry: family, address, display number, protocol name and data, each but
/// the family a big-endian 16-bit length and its bytes.
fn entry(cookie: &[u8]) -> Vec<u8> {
    let mut out = FAMILY_WILD.to_be_bytes().to_vec();
    for field in [&b""[..], b"", PROTOCOL, cookie] {
        out.extend_from_slice(&(field.len() as u16).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_entry_for_any_display() {
        let e = super::entry(&[7u8; 16]);
        assert_eq!(&e[..6], &[0xff, 0xff, 0, 0, 0, 0], "wild family, no address, no display number");
        assert_eq!(&e[6..8], &[0, 18]);
        assert_eq!(&e[8..26], b"MIT-MAGIC-COOKIE-1");
        assert_eq!(&e[26..28], &[0, 16]);
        assert_eq!(e.len(), 44);
    }
}
