//! URL checks and redaction: the page a Chromium may load, stream outputs' URLs (RTMP, RTMPS,
//! SRT), and the redacted form in which a stream URL may be shown (EgressInfo, logs).

use livekit_protocol as proto;

use super::SpecError;

/// Checks a page URL: it must parse and be http(s).
pub fn check_page_url(url: &str) -> Result<String, SpecError> {
    let parsed = url::Url::parse(url).map_err(|e| SpecError::invalid(format!("url {url:?} is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed.to_string()),
        s => Err(SpecError::invalid(format!("url scheme {s:?} is not allowed: use http or https"))),
    }
}

/// Refuses, at request time, a URL whose host the network policy refuses without DNS: an
/// address literal in a refused range, `localhost`, a name `network.deny` names. A name that
/// must be resolved is judged later, where it is connected to (the worker's proxy, a stream
/// output before each connection).
pub fn check_reachable(url: &str, policy: &crate::net::Policy, what: &str) -> Result<(), SpecError> {
    let Ok(u) = url::Url::parse(url.trim()) else { return Ok(()) };
    policy.judge_url(&u).map_err(|r| SpecError::invalid(format!("{what} refused by the network policy: {r}")))
}

/// A stream URL checked: its scheme is one we push, and it has a host (and, for RTMP, an
/// app and a stream key).
pub fn check_stream_url(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("stream url {:?}: {e}", redact(url)))?;
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("stream url {:?} has no host", redact(url)));
    }
    match u.scheme() {
        "rtmp" | "rtmps" => {
            let segments = u.path_segments().map(|s| s.filter(|p| !p.is_empty()).count()).unwrap_or(0);
            if segments < 2 {
                return Err(format!("stream url {:?}: use rtmp(s)://host/app/stream_key", redact(url)));
            }
        }
        "srt" => {
            if u.port().is_none() {
                return Err(format!("stream url {:?}: srt:// needs a port", redact(url)));
            }
        }
        s => return Err(format!("stream url scheme {s:?} is not supported: use rtmp, rtmps or srt")),
    }
    Ok(u.to_string())
}

/// The URL as it may be shown: an RTMP stream key (the last path segment) and SRT's
/// `streamid`/`passphrase` replaced by `{redacted}`, as LiveKit shows them.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url.trim()) else {
        // Not a URL: show none of it.
        return "{redacted}".into();
    };
    match u.scheme() {
        "srt" => {
            // A fragment can only be a mistyped part of the query ('#' in a streamid).
            u.set_fragment(None);
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = matches!(k.as_ref(), "streamid" | "passphrase");
                    (k.into_owned(), if secret { "{redacted}".to_string() } else { v.into_owned() })
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            // Braces stay readable.
            u.to_string().replace("%7Bredacted%7D", "{redacted}")
        }
        _ => {
            let mut segments: Vec<String> = u.path_segments().map(|s| s.map(str::to_string).collect()).unwrap_or_default();
            if let Some(last) = segments.iter_mut().rev().find(|s| !s.is_empty()) {
                *last = "{redacted}".into();
            }
            u.set_query(None);
            format!(
                "{}://{}{}/{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                segments.join("/")
            )
        }
    }
}

/// Checks a stream URL for a request (its scheme against the output's protocol, if named).
pub fn stream_url(url: &str, protocol: i32) -> Result<String, SpecError> {
    let url = check_stream_url(url).map_err(SpecError::Invalid)?;
    use proto::StreamProtocol as P;
    let srt = url.starts_with("srt:");
    match P::try_from(protocol).map_err(|_| SpecError::invalid("unknown stream protocol"))? {
        P::DefaultProtocol => Ok(url),
        P::Rtmp if !srt => Ok(url),
        P::Srt if srt => Ok(url),
        P::Rtmp | P::Srt => Err(SpecError::invalid(format!("stream url {:?} does not match its protocol", redact(&url)))),
        other => Err(SpecError::Unsupported(format!("stream protocol {} is not supported", other.as_str_name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        assert_eq!(redact("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-1234"), "rtmp://a.rtmp.youtube.com/live2/{redacted}");
        assert_eq!(redact("rtmps://user:pw@live.example:443/app/key?x=1"), "rtmps://live.example:443/app/{redacted}");
        let srt = redact("srt://ingest.example:9000?streamid=%23!::r=live/key,m=publish&passphrase=hunter2hunter2&latency=200");
        assert!(!srt.contains("hunter2") && !srt.contains("live/key") && srt.contains("latency=200"), "{srt}");
        let srt = redact("srt://ingest.example:9000?streamid=#!::r=live/key");
        assert!(!srt.contains("live/key"), "{srt}");
        assert_eq!(redact("not a url with key"), "{redacted}");
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_stream_url("rtmp://127.0.0.1:1935/live/key").is_ok());
        assert!(check_stream_url("srt://127.0.0.1:9000").is_ok());
        for bad in ["rtmp://host/secret", "srt://host?passphrase=secret", "http://host/a/secret", "rtmp:///live/secret", "secret"] {
            let e = check_stream_url(bad).unwrap_err();
            // The key never shows in the error.
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
