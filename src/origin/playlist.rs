//! Playlist text: LL-HLS media playlists (full, sliding live window, delta with EXT-X-SKIP)
//! and the multivariant playlist, rendered from a [`State`] snapshot. Pure functions: the
//! writer renders the on-disk copies with them, the origin the live ones.
//!
//! Rules followed (draft-pantos-hls-rfc8216bis, Apple's HLS authoring spec): constant
//! TARGETDURATION / PART-TARGET / hold-backs; PDT and parts placed before their parent's
//! EXTINF; parts only near the live edge; one PRELOAD-HINT while live, none after ENDLIST;
//! rendition reports for every other rendition.

use std::fmt::Write as _;

use super::live::{Params, Rendition, State, FIRST_MSN};

/// Which media playlist, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaOpts {
    /// The sliding live window (else the full-length event playlist).
    pub live: bool,
    /// A delta update (`_HLS_skip=YES`).
    pub skip: bool,
    /// With parts, preload hint and LL server control (the origin's copy); without them for
    /// the copy on disk, which is only read once the stream is over.
    pub low_latency: bool,
}

/// A path relative to the folder of `from` (both relative to the egress folder).
pub fn relative(from: &str, to: &str) -> String {
    let from_dirs: Vec<&str> = from.split('/').collect();
    let from_dirs = &from_dirs[..from_dirs.len() - 1];
    let to_parts: Vec<&str> = to.split('/').collect();
    let common = from_dirs.iter().zip(&to_parts).take_while(|(a, b)| a == b).count();
    let mut out = "../".repeat(from_dirs.len() - common);
    out.push_str(&to_parts[common..].join("/"));
    out
}

fn secs(v: f64) -> String {
    // Enough digits to be frame exact; trailing zeros dropped to keep playlists short.
    let s = format!("{v:.5}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').map(|t| format!("{t}.0")).unwrap_or_else(|| s.to_string())
}

/// Index of the first segment listed in a playlist of this kind.
fn first_listed(rend: &Rendition, params: &Params, live: bool) -> usize {
    let complete = rend.segments.iter().filter(|s| s.complete).count();
    if live {
        complete.saturating_sub(params.live_window)
    } else {
        0
    }
}

pub fn render_media(state: &State, params: &Params, r: usize, opts: MediaOpts) -> String {
    let rend = &state.renditions[r];
    let me = rend.playlist_path(opts.live);
    let ll = opts.low_latency;
    let segments = &rend.segments[first_listed(rend, params, opts.live)..];
    // Delta updates: skip whole segments lying further than the Skip Boundary from the end of
    // the last complete segment; what remains covers at least the boundary.
    let mut skipped = 0;
    if ll && opts.skip && !state.finished {
        let end: f64 = segments.iter().filter(|s| s.complete).map(|s| s.duration).sum();
        let mut start = 0.0;
        for s in segments.iter().filter(|s| s.complete) {
            if end - (start + s.duration) < params.skip_until() - 1e-6 {
                break;
            }
            start += s.duration;
            skipped += 1;
        }
    }
    let total: f64 = segments.iter().map(|s| s.duration).sum();
    let mut p = String::with_capacity(256 + segments.len() * 80);
    let _ = writeln!(p, "#EXTM3U");
    let _ = writeln!(p, "#EXT-X-VERSION:{}", if skipped > 0 { 9 } else { 6 });
    let _ = writeln!(p, "#EXT-X-TARGETDURATION:{}", params.target_duration);
    let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{}", segments.first().map(|s| s.msn).unwrap_or(FIRST_MSN));
    if !opts.live {
        // EVENT for good: the type may not change, and EXT-X-ENDLIST marks the end.
        let _ = writeln!(p, "#EXT-X-PLAYLIST-TYPE:EVENT");
    }
    let _ = writeln!(p, "#EXT-X-INDEPENDENT-SEGMENTS");
    if ll {
        let _ = writeln!(
            p,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},HOLD-BACK={},PART-HOLD-BACK={}",
            secs(params.skip_until()),
            secs(params.hold_back()),
            secs(params.part_hold_back())
        );
        let _ = writeln!(p, "#EXT-X-PART-INF:PART-TARGET={:.3}", params.part_target);
    }
    let _ = writeln!(p, "#EXT-X-MAP:URI=\"{}\"", relative(&me, &rend.init_path()));
    if skipped > 0 {
        let _ = writeln!(p, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    let mut start: f64 = segments[..skipped].iter().map(|s| s.duration).sum();
    for s in &segments[skipped..] {
        if s.pdt_ms > 0 {
            let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::iso8601_ms(s.pdt_ms));
        }
        // Parts are listed for segments starting within the part window of the live edge.
        let near_edge = total - start <= params.part_window() + 1e-6;
        start += s.duration;
        if ll && near_edge {
            for (i, part) in s.parts.iter().enumerate() {
                let _ = writeln!(
                    p,
                    "#EXT-X-PART:DURATION={},URI=\"{}\"{}",
                    secs(part.duration),
                    relative(&me, &rend.part_path(s.msn, i)),
                    if part.independent { ",INDEPENDENT=YES" } else { "" }
                );
            }
        }
        if s.complete {
            let _ = writeln!(p, "#EXTINF:{},", secs(s.duration));
            let _ = writeln!(p, "{}", relative(&me, &rend.segment_path(s.msn)));
        }
    }
    if ll {
        if let Some((msn, part)) = state.next_part(params, r) {
            let _ = writeln!(p, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", relative(&me, &rend.part_path(msn, part)));
        }
        for (i, other) in state.renditions.iter().enumerate() {
            if i == r {
                continue;
            }
            if let Some((msn, part)) = other.last_part() {
                let _ = writeln!(
                    p,
                    "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={msn},LAST-PART={part}",
                    relative(&me, &other.playlist_path(opts.live))
                );
            }
        }
    }
    if state.finished {
        let _ = writeln!(p, "#EXT-X-ENDLIST");
    }
    p
}

/// The multivariant playlist, once every rendition's codec is known. It points at the live
/// playlists, or at the full ones when `live` is false (for replay).
pub fn render_multivariant(state: &State, params: &Params, path: &str, live: bool) -> Option<String> {
    let fps = 1.0 / params.frame_secs;
    let mut p = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for rend in &state.renditions {
        let codec = rend.codec.as_ref()?;
        // BANDWIDTH is the peak: x264 CBR with a 1 s VBV stays well within 1.2 × the target.
        let avg = rend.bitrate_kbps as u64 * 1000;
        // Audio only: no picture, so no RESOLUTION or FRAME-RATE.
        let picture = match rend.width {
            0 => String::new(),
            w => format!(",RESOLUTION={w}x{},FRAME-RATE={fps:.3}", rend.height),
        };
        let _ = writeln!(p, "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={avg},CODECS=\"{codec}\"{picture}", avg * 6 / 5);
        let _ = writeln!(p, "{}", relative(path, &rend.playlist_path(live)));
    }
    Some(p)
}

/// RFC 6381 codecs of an init segment: `avc1.PPCCLL` from the avcC box, then the audio
/// track's, if any (`mp4a.40.2` for AAC-LC, `opus`). None while neither is there.
pub fn codec_string(init: &[u8]) -> Option<String> {
    let has = |tag: &[u8]| init.windows(tag.len()).any(|w| w == tag);
    let mut codecs = vec![];
    if let Some(at) = init.windows(4).position(|w| w == b"avcC") {
        let c = init.get(at + 5..at + 8)?;
        let entry = if has(b"avc3") { "avc3" } else { "avc1" };
        codecs.push(format!("{entry}.{:02x}{:02x}{:02x}", c[0], c[1], c[2]));
    }
    if has(b"mp4a") {
        codecs.push("mp4a.40.2".into());
    } else if has(b"Opus") {
        codecs.push("opus".into());
    }
    (!codecs.is_empty()).then(|| codecs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("live.m3u8", "seg_00001.m4s"), "seg_00001.m4s");
        assert_eq!(relative("live/live.m3u8", "seg_00001.m4s"), "../seg_00001.m4s");
        assert_eq!(relative("360p/live.m3u8", "360p/init.mp4"), "init.mp4");
        assert_eq!(relative("360p/a/live.m3u8", "b/live.m3u8"), "../../b/live.m3u8");
        assert_eq!(relative("master.m3u8", "360p/live.m3u8"), "360p/live.m3u8");
    }

    #[test]
    fn seconds_are_short_and_exact() {
        assert_eq!(secs(2.0), "2.0");
        assert_eq!(secs(0.2), "0.2");
        assert_eq!(secs(0.233333333), "0.23333");
    }

    #[test]
    fn codec_from_avcc() {
        let mut init = b"....avc1........avcC".to_vec();
        init.extend_from_slice(&[1, 0x4d, 0x40, 0x1f, 0xff]);
        assert_eq!(codec_string(&init).as_deref(), Some("avc1.4d401f"));
        init.extend_from_slice(b"....mp4a....esds");
        assert_eq!(codec_string(&init).as_deref(), Some("avc1.4d401f,mp4a.40.2"));
    }
}
