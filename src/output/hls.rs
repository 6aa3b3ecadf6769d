//! HLS output: writes the CMAF init segment and one `.m4s` file per segment to the egress
//! folder, and keeps two playlists up to date — the full-length event playlist and a sliding
//! live window. Files are written under a temporary name and renamed, so the origin never
//! serves a partial file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;

use crate::job::spec::HlsSpec;
use crate::media::{ChunkMeta, MuxOutput};

/// First media sequence number: hls.js stalls on 0.
const FIRST_MSN: u64 = 1;
const INIT_NAME: &str = "init.mp4";

#[derive(Debug, Clone)]
struct Segment {
    msn: u64,
    uri: String,
    duration: f64,
    wallclock_ms: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct HlsStats {
    pub segment_count: u64,
    pub bytes: u64,
    pub duration_ns: u64,
}

pub struct HlsWriter {
    dir: PathBuf,
    spec: HlsSpec,
    segments: Vec<Segment>,
    open: Option<(ChunkMeta, Vec<u8>, u64)>,
    have_init: bool,
    finished: bool,
    stats: HlsStats,
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

impl HlsWriter {
    pub fn new(dir: impl Into<PathBuf>, spec: HlsSpec) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, spec, segments: vec![], open: None, have_init: false, finished: false, stats: HlsStats::default() })
    }

    pub fn stats(&self) -> HlsStats {
        self.stats
    }

    pub fn push(&mut self, item: MuxOutput) -> Result<()> {
        match item {
            MuxOutput::Init(data) => self.init(data),
            MuxOutput::Chunk(meta, data) => self.chunk(meta, data),
        }
    }

    fn init(&mut self, data: Bytes) -> Result<()> {
        if !self.have_init {
            write_atomic(&self.dir.join(INIT_NAME), &data)?;
            self.have_init = true;
        }
        Ok(())
    }

    fn chunk(&mut self, meta: ChunkMeta, data: Bytes) -> Result<()> {
        if meta.fragment_start || self.open.is_none() {
            self.close_segment()?;
            self.open = Some((meta, Vec::with_capacity(data.len() * 12), meta.pts_ns));
        }
        if let Some((_, buf, _)) = self.open.as_mut() {
            buf.extend_from_slice(&data);
        }
        if let Some((_, _, end)) = self.open.as_mut() {
            *end = meta.pts_ns + meta.duration_ns;
        }
        Ok(())
    }

    fn close_segment(&mut self) -> Result<()> {
        let Some((first, data, end_ns)) = self.open.take() else { return Ok(()) };
        let msn = FIRST_MSN + self.segments.len() as u64;
        let uri = format!("{}_{msn:05}.m4s", self.spec.segment_prefix);
        write_atomic(&self.dir.join(&uri), &data)?;
        let duration_ns = end_ns.saturating_sub(first.pts_ns);
        self.stats.segment_count += 1;
        self.stats.bytes += data.len() as u64;
        self.stats.duration_ns += duration_ns;
        self.segments.push(Segment { msn, uri, duration: duration_ns as f64 / 1e9, wallclock_ms: first.wallclock_ms });
        self.write_playlists()
    }

    /// Closes the last segment and writes both playlists with EXT-X-ENDLIST. Idempotent.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.close_segment()?;
        self.finished = true;
        self.write_playlists()
    }

    fn write_playlists(&self) -> Result<()> {
        let window_start = self.segments.len().saturating_sub(self.spec.live_window);
        let event = self.render(&self.segments, true);
        let live = self.render(&self.segments[window_start..], false);
        write_atomic(&self.dir.join(&self.spec.playlist_name), event.as_bytes())?;
        write_atomic(&self.dir.join(&self.spec.live_playlist_name), live.as_bytes())
    }

    /// Playlist URIs are relative to the playlist's own folder.
    fn relative(&self, playlist: &str, target: &str) -> String {
        let depth = playlist.matches('/').count();
        format!("{}{target}", "../".repeat(depth))
    }

    fn render(&self, segments: &[Segment], event: bool) -> String {
        let name = if event { &self.spec.playlist_name } else { &self.spec.live_playlist_name };
        let longest = segments.iter().map(|s| s.duration).fold(self.spec.segment_duration as f64, f64::max);
        let mut p = String::new();
        let _ = writeln!(p, "#EXTM3U");
        let _ = writeln!(p, "#EXT-X-VERSION:7");
        let _ = writeln!(p, "#EXT-X-TARGETDURATION:{}", longest.round() as u64);
        let _ = writeln!(p, "#EXT-X-MEDIA-SEQUENCE:{}", segments.first().map(|s| s.msn).unwrap_or(FIRST_MSN));
        if event {
            // EVENT for good: the type may not change, and EXT-X-ENDLIST marks the end.
            let _ = writeln!(p, "#EXT-X-PLAYLIST-TYPE:EVENT");
        }
        let _ = writeln!(p, "#EXT-X-INDEPENDENT-SEGMENTS");
        let _ = writeln!(p, "#EXT-X-MAP:URI=\"{}\"", self.relative(name, INIT_NAME));
        for s in segments {
            if s.wallclock_ms > 0 {
                let _ = writeln!(p, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::clock::iso8601_ms(s.wallclock_ms));
            }
            let _ = writeln!(p, "#EXTINF:{:.5},", s.duration);
            let _ = writeln!(p, "{}", self.relative(name, &s.uri));
        }
        if self.finished {
            let _ = writeln!(p, "#EXT-X-ENDLIST");
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HlsSpec {
        HlsSpec {
            playlist_name: "playlist.m3u8".into(),
            live_playlist_name: "live/live.m3u8".into(),
            segment_prefix: "seg".into(),
            segment_duration: 2,
            part_duration_ms: 200,
            live_window: 3,
        }
    }

    fn chunk(pts_ms: u64, start: bool) -> MuxOutput {
        MuxOutput::Chunk(
            ChunkMeta { pts_ns: pts_ms * 1_000_000, duration_ns: 200_000_000, fragment_start: start, wallclock_ms: 1_700_000_000_000 + pts_ms },
            Bytes::from_static(b"moofmdat"),
        )
    }

    #[test]
    fn segments_playlists_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlsWriter::new(dir.path(), spec()).unwrap();
        w.push(MuxOutput::Init(Bytes::from_static(b"ftypmoov"))).unwrap();
        for i in 0..50u64 {
            w.push(chunk(i * 200, i % 10 == 0)).unwrap();
        }
        let live = std::fs::read_to_string(dir.path().join("live/live.m3u8")).unwrap();
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{live}");
        assert!(live.contains("#EXT-X-MAP:URI=\"../init.mp4\""));
        assert!(live.contains("../seg_00004.m4s") && !live.contains("ENDLIST"));
        w.finish().unwrap();
        let full = std::fs::read_to_string(dir.path().join("playlist.m3u8")).unwrap();
        assert_eq!(full.matches("#EXTINF:2.00000,").count(), 5, "{full}");
        assert!(full.contains("#EXT-X-MEDIA-SEQUENCE:1\n") && full.ends_with("#EXT-X-ENDLIST\n"));
        assert!(full.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"), "{full}");
        assert_eq!(std::fs::read(dir.path().join("seg_00005.m4s")).unwrap().len(), 80);
        assert_eq!(w.stats().segment_count, 5);
        assert_eq!(w.stats().duration_ns, 10_000_000_000);
    }
}
