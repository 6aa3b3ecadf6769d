//! Signed HLS URLs (config `origin.signing_key`): `/hls/{egress_id}/…` answers only requests
//! that carry `exp` (unix seconds) and `sig`, the base64url HMAC-SHA256 of the egress's folder
//! path and `exp`. One signature covers every file of an egress, so the playlists hand the
//! viewer's own `exp`/`sig` on to every URI they list (segments, parts, the init segment,
//! preload hints, rendition reports, variant playlists) and hls.js follows them unchanged; a
//! per-file signature would make every playlist unique to one viewer and defeat its cache.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this origin needs signed URLs: exp and sig are missing")]
    Unsigned,
    #[error("the URL's signature has expired")]
    Expired,
    #[error("the URL's signature does not match")]
    BadSignature,
}

pub struct Signer {
    key: Vec<u8>,
    ttl: Duration,
}

impl Signer {
    pub fn new(key: &str, ttl: Duration) -> Self {
        Self { key: key.as_bytes().to_vec(), ttl }
    }

    /// The signer `origin` configures, if it sets a key.
    pub fn from_config(origin: &crate::config::OriginConfig) -> Option<Self> {
        origin.signing_key.as_deref().map(|k| Self::new(k, Duration::from_secs(origin.url_ttl_secs)))
    }

    fn mac(&self, egress_id: &str, exp: u64) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(format!("/hls/{egress_id}/\n{exp}").as_bytes());
        mac
    }

    /// The query (`exp=…&sig=…`) a location of `egress_id` carries, valid for the configured
    /// time from now.
    pub fn query(&self, egress_id: &str) -> String {
        self.query_until(egress_id, now_secs() + self.ttl.as_secs())
    }

    pub fn query_until(&self, egress_id: &str, exp: u64) -> String {
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(egress_id, exp).finalize().into_bytes());
        format!("exp={exp}&sig={sig}")
    }

    /// Checks a request's query; on success, the `exp=…&sig=…` to hand on to the URIs of a
    /// playlist it is answered with.
    pub fn verify(&self, egress_id: &str, query: Option<&str>) -> Result<String, Denied> {
        let (mut exp, mut sig) = (None, None);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "exp" => exp = Some(v.into_owned()),
                "sig" => sig = Some(v.into_owned()),
                _ => {}
            }
        }
        let (Some(exp_text), Some(sig)) = (exp, sig) else { return Err(Denied::Unsigned) };
        let exp: u64 = exp_text.parse().map_err(|_| Denied::BadSignature)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig.as_bytes()).map_err(|_| Denied::BadSignature)?;
        // Constant-time comparison, so the signature cannot be guessed byte by byte.
        self.mac(egress_id, exp).verify_slice(&raw).map_err(|_| Denied::BadSignature)?;
        if exp < now_secs() {
            return Err(Denied::Expired);
        }
        Ok(format!("exp={exp}&sig={sig}"))
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `uri` with `query` added (after `?`, or `&` if it has a query already).
fn with_query(uri: &str, query: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

/// A playlist with `query` added to every URI it lists: each URI line and each `URI="…"`
/// attribute of a tag.
pub fn sign_uris(playlist: &str, query: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * playlist.len() / 80);
    for line in playlist.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.is_empty() {
            out.push_str(line);
        } else if body.starts_with('#') {
            let mut rest = body;
            while let Some(at) = rest.find("URI=\"") {
                let (head, tail) = rest.split_at(at + 5);
                out.push_str(head);
                let end = tail.find('"').unwrap_or(tail.len());
                out.push_str(&with_query(&tail[..end], query));
                rest = &tail[end..];
            }
            out.push_str(rest);
            out.push_str(nl);
        } else {
            out.push_str(&with_query(body, query));
            out.push_str(nl);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_egress_and_expire() {
        let s = Signer::new("a-key-of-some-length", Duration::from_secs(60));
        let q = s.query("EG_a");
        assert_eq!(s.verify("EG_a", Some(&format!("_HLS_msn=3&{q}"))).as_deref(), Ok(q.as_str()));
        assert_eq!(s.verify("EG_b", Some(&q)), Err(Denied::BadSignature), "another egress");
        assert_eq!(s.verify("EG_a", None), Err(Denied::Unsigned));
        assert_eq!(s.verify("EG_a", Some("exp=1")), Err(Denied::Unsigned));
        let tampered = q.replace("exp=", "exp=1");
        assert_eq!(s.verify("EG_a", Some(&tampered)), Err(Denied::BadSignature));
        let other_key = Signer::new("another-key", Duration::from_secs(60));
        assert_eq!(other_key.verify("EG_a", Some(&q)), Err(Denied::BadSignature));
        let old = s.query_until("EG_a", 1_000);
        assert_eq!(s.verify("EG_a", Some(&old)), Err(Denied::Expired));
    }

    #[test]
    fn every_uri_of_a_playlist_carries_the_query() {
        let p = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"p1.0.m4s\",INDEPENDENT=YES\n\
                 #EXTINF:2.0,\nseg1.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.0.m4s\"\n\
                 #EXT-X-RENDITION-REPORT:URI=\"../low/live.m3u8\",LAST-MSN=1,LAST-PART=0\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/live.m3u8?x=1\n";
        let s = sign_uris(p, "exp=9&sig=A");
        assert_eq!(
            s,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?exp=9&sig=A\"\n#EXT-X-PART:DURATION=0.2,URI=\"p1.0.m4s?exp=9&sig=A\",INDEPENDENT=YES\n\
             #EXTINF:2.0,\nseg1.m4s?exp=9&sig=A\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p2.0.m4s?exp=9&sig=A\"\n\
             #EXT-X-RENDITION-REPORT:URI=\"../low/live.m3u8?exp=9&sig=A\",LAST-MSN=1,LAST-PART=0\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/live.m3u8?x=1&exp=9&sig=A\n"
        );
    }
}
