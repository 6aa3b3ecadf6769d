//! The room composite's template contract, as LiveKit Egress defines it: the hidden
//! recorder's access token and the template URL (`{base}?layout=…&token=…&url=…`), so templates
//! built on `@livekit/egress-sdk` work unchanged; and the rule a layout name follows.

use std::time::Duration;

use anyhow::{Context, Result};
use livekit_api::access_token::{AccessToken, VideoGrants};

use super::SpecError;
use crate::config::Sfu;

/// A layout name as requests (StartRoomCompositeEgress, UpdateLayout) may give it.
pub fn check_layout(layout: &str) -> Result<(), SpecError> {
    if layout.len() > 128 || layout.chars().any(char::is_control) {
        return Err(SpecError::invalid("layout must be at most 128 characters, without control characters"));
    }
    Ok(())
}

/// The recorder's identity is the egress id, as LiveKit Egress does (UpdateLayout finds the
/// participant by it).
pub fn recorder_token(key: &str, secret: &str, room: &str, egress_id: &str, ttl: Duration) -> Result<String> {
    AccessToken::with_api_key(key, secret)
        .with_identity(egress_id)
        .with_name("roomcast")
        .with_kind("egress")
        .with_ttl(ttl)
        .with_grants(VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_subscribe: Some(true),
            can_publish: Some(false),
            can_publish_data: Some(false),
            hidden: true,
            recorder: true,
            ..Default::default()
        })
        .to_jwt()
        .context("signing the recorder token")
}

/// `base` with the template parameters added (an existing query is kept). Only a non-LiveKit
/// SFU adds `sfu`, so a LiveKit template gets exactly LiveKit Egress's three parameters.
pub fn template_url(base: &url::Url, sfu: Sfu, sfu_url: &str, token: &str, layout: &str) -> String {
    let mut u = base.clone();
    {
        let mut q = u.query_pairs_mut();
        // Sorted by name, as Go's url.Values encodes them in LiveKit Egress.
        q.append_pair("layout", layout);
        if sfu != Sfu::Livekit {
            q.append_pair("sfu", sfu.as_str());
        }
        q.append_pair("token", token);
        q.append_pair("url", sfu_url);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    #[test]
    fn recorder_token_has_the_egress_grants() {
        let jwt = recorder_token("k", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t", "room-1", "EG_abc", Duration::from_secs(60)).unwrap();
        let claims = TokenVerifier::with_api_key("k", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t").verify(&jwt).unwrap();
        assert_eq!(claims.sub, "EG_abc");
        let v = claims.video;
        assert!(v.room_join && v.can_subscribe == Some(true) && v.hidden && v.recorder);
        assert!(v.can_publish == Some(false) && v.can_publish_data == Some(false) && !v.room_admin && !v.room_record);
        assert_eq!(v.room, "room-1");
    }

    #[test]
    fn template_url_follows_livekit_and_keeps_a_query() {
        let base = url::Url::parse("https://t.example/tpl/?theme=x").unwrap();
        let u = url::Url::parse(&template_url(&base, Sfu::Livekit, "wss://lk.example", "a.b.c", "speaker-light")).unwrap();
        let q: Vec<(String, String)> = u.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        let names: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["theme", "layout", "token", "url"]);
        assert_eq!(q[3].1, "wss://lk.example");
        let u = template_url(&base, Sfu::Janus, "ws://10.0.0.2:8188", "t", "");
        assert!(u.contains("sfu=janus") && u.contains("layout=&"), "{u}");
    }

    #[test]
    fn layouts_are_short_and_printable() {
        assert!(check_layout("speaker-light").is_ok() && check_layout("").is_ok());
        assert!(check_layout(&"x".repeat(129)).is_err() && check_layout("a\nb").is_err());
    }
}
