//! The restart journal: each egress's `EgressInfo`, one JSON line per change of its status or
//! of its outputs, appended to `{output_dir}/{egress_id}/egress.journal` (the final line synced
//! to disk). A serve started again on the same output folder reads the last complete line of
//! each journal: ended egresses are listed as they ended; one that was still running ends
//! FAILED "service restarted", its playlists get EXT-X-ENDLIST, its MP4 is rewritten index
//! first and temp files go.
//!
//! Why a file per egress rather than SQLite (rusqlite): the journal lives and is deleted with
//! the egress's outputs (retention removes one folder), an append of a line is the only write
//! (a crash leaves at worst a torn last line, which is skipped), there is no shared database to
//! lock or corrupt when the disk fills, and no C library is linked in for it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use livekit_protocol as proto;
use proto::EgressStatus as S;
use tracing::{info, warn};

use crate::clock::unix_ns;

pub const JOURNAL_NAME: &str = "egress.journal";
/// What an egress that was running when serve died ends with.
pub const RESTARTED: &str = "service restarted";

/// Appends `info` to its egress's journal; `sync` forces it to disk (for final states).
pub fn append(output_dir: &Path, info: &proto::EgressInfo, sync: bool) -> Result<()> {
    let dir = output_dir.join(&info.egress_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(JOURNAL_NAME);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // After a torn last line (a crash mid-append), start a new one.
    let mut line = match last_byte(&f) {
        Some(b) if b != b'\n' => vec![b'\n'],
        _ => vec![],
    };
    line.extend(serde_json::to_vec(info).context("encoding the journal line")?);
    line.push(b'\n');
    f.write_all(&line).with_context(|| format!("appending to {}", path.display()))?;
    if sync {
        f.sync_data().with_context(|| format!("syncing {}", path.display()))?;
    }
    Ok(())
}

fn last_byte(f: &std::fs::File) -> Option<u8> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().ok()?.len();
    let mut b = [0u8; 1];
    (len > 0 && f.read_at(&mut b, len - 1).ok()? == 1).then_some(b[0])
}

/// The last complete line of a journal.
fn last_info(path: &Path) -> Option<proto::EgressInfo> {
    let f = std::fs::File::open(path).ok()?;
    std::io::BufReader::new(f).lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str(&l).ok()).last()
}

/// An egress found in the output folder, and what is left to do for it.
pub struct Recovered {
    pub info: proto::EgressInfo,
    /// MP4s of an interrupted egress, to rewrite index first: (path, video, audio, opus).
    pub mp4s: Vec<(PathBuf, bool, bool, bool)>,
}

/// Reads every journal under `output_dir`; an egress that was live is ended FAILED, its
/// playlists closed and its temp files removed (its MP4s are left to the caller, which needs
/// a push process to rewrite them).
pub fn recover(output_dir: &Path) -> Vec<Recovered> {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return vec![] };
    let mut out = vec![];
    for e in entries.flatten() {
        let dir = e.path();
        let Some(mut info) = last_info(&dir.join(JOURNAL_NAME)) else { continue };
        let live = matches!(S::try_from(info.status), Ok(S::EgressStarting | S::EgressActive | S::EgressEnding));
        let mut mp4s = vec![];
        if live {
            let now = unix_ns();
            info.status = S::EgressFailed as i32;
            info.error = RESTARTED.into();
            info.error_code = 500;
            info.details = "the service restarted while this egress ran; its outputs were closed at restart".into();
            info.ended_at = now;
            info.updated_at = now;
            close_folder(&dir);
            let (video, audio, opus) = tracks(&info);
            for f in &info.file_results {
                let path = dir.join(&f.filename);
                if f.filename.ends_with(".mp4") && path.is_file() {
                    mp4s.push((path, video, audio, opus));
                }
            }
            if let Err(e) = append(output_dir, &info, true) {
                warn!(egress_id = %info.egress_id, "journal: {e:#}");
            }
            info!(egress_id = %info.egress_id, "egress interrupted by a restart: ended FAILED, outputs closed");
        }
        out.push(Recovered { info, mp4s });
    }
    out
}

/// Removes the folders of egresses that ended more than `max_age` ago (per their journal; a
/// folder without one, by its modification time). Returns the ids removed.
pub fn sweep(output_dir: &Path, max_age: std::time::Duration) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return vec![] };
    let now_ns = unix_ns();
    let limit_ns = max_age.as_nanos().min(i64::MAX as u128) as i64;
    let mut removed = vec![];
    for e in entries.flatten() {
        let dir = e.path();
        if !dir.is_dir() {
            continue;
        }
        let old = match last_info(&dir.join(JOURNAL_NAME)) {
            Some(i) => {
                let ended = !matches!(S::try_from(i.status), Ok(S::EgressStarting | S::EgressActive | S::EgressEnding));
                ended && i.ended_at > 0 && now_ns.saturating_sub(i.ended_at) > limit_ns
            }
            None => e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > max_age),
        };
        if old {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(e.file_name().to_string_lossy().to_string()),
                Err(err) => warn!(dir = %dir.display(), "retention: removing: {err}"),
            }
        }
    }
    removed
}

/// Ends every playlist in the folder (and its rendition folders) with EXT-X-ENDLIST and removes
/// half-written temp files. The copies on disk carry no parts, so closing is appending a line.
fn close_folder(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            close_folder(&path);
        } else if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
        } else if name.ends_with(".m3u8") {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            // The multivariant playlist lists playlists, not segments: nothing to end.
            if text.contains("#EXT-X-STREAM-INF") || text.contains("#EXT-X-ENDLIST") {
                continue;
            }
            let closed = format!("{}{}#EXT-X-ENDLIST\n", text, if text.ends_with('\n') { "" } else { "\n" });
            let tmp = path.with_extension("m3u8.closing");
            if std::fs::write(&tmp, closed).and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
                warn!(path = %path.display(), "journal: could not close the playlist");
            }
        }
    }
}

/// (video, audio, opus) of an egress's MP4, from its request.
#[allow(deprecated)]
fn tracks(info: &proto::EgressInfo) -> (bool, bool, bool) {
    use proto::egress_info::Request as R;
    let (audio_only, video_only, opus) = match &info.request {
        Some(R::Web(r)) => (r.audio_only, r.video_only, advanced_opus(r.options.as_ref().and_then(web_advanced))),
        Some(R::RoomComposite(r)) => (r.audio_only, r.video_only, advanced_opus(r.options.as_ref().and_then(room_advanced))),
        _ => (false, false, false),
    };
    (!audio_only, !video_only, opus)
}

fn web_advanced(o: &proto::web_egress_request::Options) -> Option<&proto::EncodingOptions> {
    match o {
        proto::web_egress_request::Options::Advanced(a) => Some(a),
        _ => None,
    }
}

fn room_advanced(o: &proto::room_composite_egress_request::Options) -> Option<&proto::EncodingOptions> {
    match o {
        proto::room_composite_egress_request::Options::Advanced(a) => Some(a),
        _ => None,
    }
}

fn advanced_opus(a: Option<&proto::EncodingOptions>) -> bool {
    a.is_some_and(|a| a.audio_codec == proto::AudioCodec::Opus as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_egress_is_ended_and_its_playlists_closed() {
        let out = tempfile::tempdir().unwrap();
        let mut info = proto::EgressInfo { egress_id: "EG_j".into(), status: S::EgressActive as i32, ..Default::default() };
        append(out.path(), &info, false).unwrap();
        info.status = S::EgressActive as i32;
        info.updated_at = 5;
        append(out.path(), &info, false).unwrap();
        let dir = out.path().join("EG_j");
        std::fs::write(dir.join("live.m3u8"), "#EXTM3U\n#EXTINF:2.0,\nsegment_00001.m4s\n").unwrap();
        std::fs::write(dir.join("master.m3u8"), "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlive.m3u8\n").unwrap();
        std::fs::write(dir.join("live.tmp"), "half").unwrap();
        // A torn last line (the crash hit mid-append) is skipped.
        std::fs::OpenOptions::new().append(true).open(dir.join(JOURNAL_NAME)).unwrap().write_all(b"{\"egressId\":").unwrap();
        let got = recover(out.path());
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].info.status, got[0].info.error.as_str()), (S::EgressFailed as i32, RESTARTED));
        assert!(std::fs::read_to_string(dir.join("live.m3u8")).unwrap().ends_with("segment_00001.m4s\n#EXT-X-ENDLIST\n"));
        assert!(!std::fs::read_to_string(dir.join("master.m3u8")).unwrap().contains("ENDLIST"));
        assert!(!dir.join("live.tmp").exists());
        // Read again: it is ended now, and stays as it ended.
        let again = recover(out.path());
        assert_eq!((again[0].info.status, again[0].info.ended_at), (S::EgressFailed as i32, got[0].info.ended_at));
        // Retention: an ended egress goes once it is older than the limit, not before.
        assert!(sweep(out.path(), std::time::Duration::from_secs(3600)).is_empty());
        std::fs::create_dir(out.path().join("EG_live")).unwrap();
        let live = proto::EgressInfo { egress_id: "EG_live".into(), status: S::EgressActive as i32, ..Default::default() };
        append(out.path(), &live, false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(sweep(out.path(), std::time::Duration::from_millis(10)), vec!["EG_j".to_string()]);
        assert!(out.path().join("EG_live").is_dir(), "a live egress is never removed");
    }
}
