//! LL-HLS output. The writer takes the pipeline's CMAF init segments and chunks (one LL-HLS
//! part each) and publishes them into the egress's live store ([`LiveHls`]): parts stay in
//! memory near the live edge, where the origin serves them; each completed segment (the
//! concatenation of its parts, so parent and parts hold the same samples) goes to disk with
//! a copy of the playlists, so the recording outlives the process.
//!
//! Files are written under a temporary name and renamed: nothing partial is ever served.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use tracing::warn;

use crate::media::{ChunkMeta, MuxOutput};
use crate::origin::live::{LiveHls, Part, Rendition, Segment, FIRST_MSN};
use crate::origin::playlist::{self, MediaOpts};
use crate::spec::MULTIVARIANT_NAME;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct HlsStats {
    pub segment_count: u64,
    pub bytes: u64,
    pub duration_ns: u64,
}

pub struct HlsWriter {
    stream: Arc<LiveHls>,
    finished: bool,
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))
        .and_then(|mut f| f.write_all(data).with_context(|| format!("writing {}", tmp.display())));
    if let Err(e) = written {
        // A full disk leaves no half file behind, and gets its space back.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Space held in each egress folder while it records and given back when its playlists are
/// closed, so a disk that filled up still takes the final playlists (a few hundred bytes per
/// segment) and the journal's last line. A `.tmp` name: a restarted serve removes it with the
/// other leftovers.
const RESERVE_NAME: &str = "disk-reserve.tmp";
const RESERVE_BYTES: usize = 256 << 10;

/// Appends a part to segment `msn` of a rendition, opening that segment if it is new.
///
/// The first segment's PROGRAM-DATE-TIME is its capture time; each later one's is the previous
/// one's plus its duration, so dates step exactly with EXTINF (a chunk's own time is its
/// earliest sample's, which with audio may be an audio frame straddling the boundary).
fn push_part(rend: &mut Rendition, msn: u64, wallclock_ms: u64, part: Part) {
    if rend.segments.last().is_none_or(|s| s.msn != msn) {
        let pdt_ms = match rend.segments.last() {
            Some(prev) => prev.pdt_ms + (prev.duration * 1000.0).round() as u64,
            None => wallclock_ms,
        };
        rend.segments.push(Segment { msn, duration: 0.0, pdt_ms, complete: false, bytes: 0, parts: vec![] });
    }
    if let Some(seg) = rend.segments.last_mut() {
        seg.duration += part.duration;
        seg.bytes += part.data.len() as u64;
        seg.parts.push(part);
    }
}

impl HlsWriter {
    pub fn new(stream: Arc<LiveHls>) -> Result<Self> {
        std::fs::create_dir_all(&stream.dir).with_context(|| format!("creating {}", stream.dir.display()))?;
        // Written, not sparse: a reserve the file system has not allocated reserves nothing.
        std::fs::write(stream.dir.join(RESERVE_NAME), vec![0u8; RESERVE_BYTES])
            .with_context(|| format!("reserving {RESERVE_BYTES} bytes in {}", stream.dir.display()))?;
        Ok(Self { stream, finished: false })
    }

    pub fn stream(&self) -> &Arc<LiveHls> {
        &self.stream
    }

    /// The main rendition's completed segments (what EgressInfo reports), from the state:
    /// a segment reopened after being counted simply stops counting.
    pub fn stats(&self) -> HlsStats {
        let st = self.stream.read();
        let done = st.renditions.first().map(|r| &r.segments[..]).unwrap_or(&[]).iter().filter(|s| s.complete);
        done.fold(HlsStats::default(), |acc, s| HlsStats {
            segment_count: acc.segment_count + 1,
            bytes: acc.bytes + s.bytes,
            duration_ns: acc.duration_ns + (s.duration * 1e9).round() as u64,
        })
    }

    pub fn push(&mut self, item: MuxOutput) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        match item {
            MuxOutput::Init(r, data) => self.init(r, data),
            MuxOutput::Chunk(meta, data) => self.chunk(meta, data),
        }
    }

    fn init(&mut self, r: usize, data: Bytes) -> Result<()> {
        let path = {
            let st = self.stream.read();
            match st.renditions.get(r) {
                Some(rend) if rend.init.is_none() => rend.init_path(),
                _ => return Ok(()),
            }
        };
        write_atomic(&self.stream.dir.join(path), &data)?;
        let codec = playlist::codec_string(&data);
        if codec.is_none() {
            warn!(rendition = r, "no avcC in the init segment: the multivariant playlist will lack CODECS");
        }
        self.stream.update(|st| {
            st.renditions[r].codec = Some(codec.unwrap_or_else(|| "avc1".into()));
            st.renditions[r].init = Some(data);
        });
        let master = {
            let st = self.stream.read();
            playlist::render_multivariant(&st, &self.stream.params, MULTIVARIANT_NAME, true)
        };
        if let Some(text) = master {
            write_atomic(&self.stream.dir.join(MULTIVARIANT_NAME), text.as_bytes())?;
        }
        Ok(())
    }

    fn chunk(&mut self, meta: ChunkMeta, data: Bytes) -> Result<()> {
        let r = meta.rendition;
        if r >= self.stream.read().renditions.len() {
            return Ok(());
        }
        if meta.fragment_start {
            self.close_segment(r, None)?;
        }
        let part = Part {
            duration: meta.duration_ns as f64 / 1e9,
            // Each CMAF fragment, hence each segment, starts with an IDR.
            independent: meta.independent,
            data,
            published_us: crate::clock::unix_us(),
        };
        let params = self.stream.params;
        if part.duration > params.part_target + 1e-6 {
            warn!(rendition = r, duration = part.duration, target = params.part_target, "part longer than PART-TARGET");
        }
        let (msn, so_far, reopen) = {
            let st = self.stream.read();
            match st.renditions[r].segments.last() {
                Some(s) if !s.complete => (s.msn, s.duration, false),
                // A segment closed at its expected length, but the muxer went on without a
                // keyframe: the grid was wrong. Keep the media in that segment rather than
                // start one on a part that cannot be decoded alone.
                Some(s) if !meta.fragment_start => (s.msn, s.duration, true),
                Some(s) => (s.msn + 1, 0.0, false),
                None => (FIRST_MSN, 0.0, false),
            }
        };
        if reopen {
            warn!(rendition = r, msn, "segment went on past its expected length without a keyframe; reopened it");
            self.stream.update(|st| {
                if let Some(s) = st.renditions[r].segments.last_mut() {
                    s.complete = false;
                }
            });
        }
        // A part that brings its segment to exactly its length completes it: the segment is
        // published with the part, in one update, so players see it listed with its last part.
        // Not the first segment: its end hangs on a keyframe the muxer requests once every
        // stream has data, which with audio can land a frame or two late; it is closed by the
        // next segment's first part. A reopened (longer) segment waits for the next keyframe.
        let completes = !reopen && msn != FIRST_MSN && (so_far + part.duration - params.segment_secs).abs() < params.frame_secs / 2.0;
        if completes {
            return self.close_segment(r, Some((msn, meta.wallclock_ms, part)));
        }
        self.stream.update(|st| push_part(&mut st.renditions[r], msn, meta.wallclock_ms, part));
        Ok(())
    }

    /// Completes the open segment of rendition `r` (or, with `last`, the segment that part
    /// completes): its file goes to disk first, then it is marked complete in the state.
    fn close_segment(&mut self, r: usize, last: Option<(u64, u64, Part)>) -> Result<()> {
        let (path, data, msn, duration) = {
            let st = self.stream.read();
            let rend = &st.renditions[r];
            let open = rend.open();
            let (msn, mut duration) = match (&last, open) {
                (Some((msn, ..)), _) => (*msn, 0.0),
                (None, Some(seg)) => (seg.msn, 0.0),
                (None, None) => return Ok(()),
            };
            let mut data = Vec::new();
            for p in open.filter(|s| s.msn == msn).map(|s| &s.parts[..]).unwrap_or(&[]).iter().chain(last.as_ref().map(|l| &l.2)) {
                data.extend_from_slice(&p.data);
                duration += p.duration;
            }
            (rend.segment_path(msn), data, msn, duration)
        };
        // On disk before it is in a playlist: a listed segment is fetchable at once.
        write_atomic(&self.stream.dir.join(path), &data)?;
        let params = self.stream.params;
        if duration > params.td() + 0.5 {
            warn!(rendition = r, msn, duration, "segment longer than the target duration");
        }
        // Keep part bytes while players may still ask for them: listed near the edge, then
        // fetchable for as long again after they leave the playlist.
        let keep = ((2.0 * params.part_window()) / params.segment_secs).ceil() as usize + 1;
        self.stream.update(|st| {
            let rend = &mut st.renditions[r];
            if let Some((msn, wallclock_ms, part)) = last {
                push_part(rend, msn, wallclock_ms, part);
            }
            if let Some(seg) = rend.segments.last_mut() {
                seg.complete = true;
            }
            let n = rend.segments.len();
            for old in rend.segments.iter_mut().take(n.saturating_sub(keep)).rev() {
                if old.parts.is_empty() {
                    break;
                }
                old.parts = vec![];
            }
        });
        self.write_disk_playlists(r)
    }

    /// The copies on disk: no parts or LL tags (those only make sense from the live origin).
    fn write_disk_playlists(&self, r: usize) -> Result<()> {
        let (full, live, full_path, live_path) = {
            let st = self.stream.read();
            let p = &self.stream.params;
            let opts = |live| MediaOpts { live, skip: false, low_latency: false };
            let rend = &st.renditions[r];
            (
                playlist::render_media(&st, p, r, opts(false)),
                playlist::render_media(&st, p, r, opts(true)),
                rend.playlist_path(false),
                rend.playlist_path(true),
            )
        };
        write_atomic(&self.stream.dir.join(full_path), full.as_bytes())?;
        write_atomic(&self.stream.dir.join(live_path), live.as_bytes())
    }

    /// Closes every open segment and ends the playlists with EXT-X-ENDLIST. Idempotent.
    pub fn finish(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let _ = std::fs::remove_file(self.stream.dir.join(RESERVE_NAME));
        let n = self.stream.read().renditions.len();
        let mut result = Ok(());
        for r in 0..n {
            if let Err(e) = self.close_segment(r, None) {
                result = Err(e);
            }
        }
        self.stream.update(|st| st.finished = true);
        for r in 0..n {
            if let Err(e) = self.write_disk_playlists(r) {
                result = Err(e);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::spec::JobSpec;
    use livekit_protocol as proto;

    pub fn stream_in(dir: &Path) -> Arc<LiveHls> {
        let req = proto::WebEgressRequest {
            url: "http://example.com/".into(),
            segment_outputs: vec![proto::SegmentedFileOutput {
                live_playlist_name: "live/live.m3u8".into(),
                filename_prefix: "seg".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let spec = JobSpec::from_web_request("EG_t", &req, &Config::default()).unwrap();
        let mut hls = spec.hls.clone().unwrap();
        hls.live_window = 3;
        LiveHls::new("EG_t", dir.to_path_buf(), &spec.timing(&hls), spec.video.as_ref(), spec.audio_kbps(), &hls)
    }

    fn chunk(i: u64) -> MuxOutput {
        MuxOutput::Chunk(
            ChunkMeta {
                pts_ns: i * 200_000_000,
                duration_ns: 200_000_000,
                // The real grid: a one-part first segment, then 10 parts per segment.
                fragment_start: i % 10 == 1 || i == 0,
                independent: i % 10 == 1 || i == 0,
                wallclock_ms: 1_700_000_000_000 + i * 200,
                rendition: 0,
            },
            Bytes::from_static(b"moofmdat"),
        )
    }

    fn live(w: &HlsWriter, skip: bool) -> String {
        let st = w.stream().read();
        playlist::render_media(&st, &w.stream().params, 0, MediaOpts { live: true, skip, low_latency: true })
    }

    #[test]
    fn parts_segments_and_playlists() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlsWriter::new(stream_in(dir.path())).unwrap();
        w.push(MuxOutput::Init(0, Bytes::from_static(b"ftypmoov"))).unwrap();
        for i in 0..54u64 {
            w.push(chunk(i)).unwrap();
        }
        let p = live(&w, false);
        // 6 complete segments (the first one part long), 3 in the window, and 3 parts of the 7th.
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{p}");
        assert!(p.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"), "{p}");
        assert!(p.contains("CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,HOLD-BACK=6.0,PART-HOLD-BACK=0.8\n"), "{p}");
        assert!(p.contains("#EXT-X-MAP:URI=\"../init.mp4\""), "{p}");
        assert!(p.contains("#EXT-X-PART:DURATION=0.2,URI=\"../seg_00007.0.m4s\",INDEPENDENT=YES\n"), "{p}");
        assert!(p.contains("#EXT-X-PART:DURATION=0.2,URI=\"../seg_00007.2.m4s\"\n"), "{p}");
        assert!(p.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"../seg_00007.3.m4s\"\n"), "{p}");
        // Parts only for segments starting within 3 × TD of the edge (the 6th, 5th, and the open one).
        assert!(!p.contains("seg_00004.0.m4s") && p.contains("seg_00005.9.m4s"), "{p}");
        assert_eq!(std::fs::read(dir.path().join("seg_00006.m4s")).unwrap().len(), 80);
        // On disk: no LL tags.
        let disk = std::fs::read_to_string(dir.path().join("live/live.m3u8")).unwrap();
        assert!(!disk.contains("EXT-X-PART") && !disk.contains("PRELOAD"), "{disk}");
        // A segment is listed, and the hint moves to the next one, with its last part.
        for i in 54..61u64 {
            w.push(chunk(i)).unwrap();
        }
        let p = live(&w, false);
        assert!(p.contains("#EXTINF:2.0,\n../seg_00007.m4s\n"), "{p}");
        assert!(p.contains("PRELOAD-HINT:TYPE=PART,URI=\"../seg_00008.0.m4s\""), "{p}");
        w.finish().unwrap();
        let full = std::fs::read_to_string(dir.path().join("playlist.m3u8")).unwrap();
        assert_eq!(full.matches("#EXTINF:2.0,").count(), 6, "{full}");
        assert!(full.contains("#EXTINF:0.2,\nseg_00001.m4s\n"), "{full}");
        assert!(full.contains("#EXT-X-MEDIA-SEQUENCE:1\n") && full.ends_with("#EXT-X-ENDLIST\n"));
        assert!(full.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"), "{full}");
        assert!(!live(&w, false).contains("PRELOAD-HINT"));
        assert_eq!(w.stats().segment_count, 7);
        assert_eq!(w.stats().duration_ns, 12_200_000_000);
    }

    #[test]
    fn a_segment_longer_than_the_grid_is_reopened_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlsWriter::new(stream_in(dir.path())).unwrap();
        for i in 0..11u64 {
            w.push(chunk(i)).unwrap();
        }
        assert_eq!(w.stats().segment_count, 2);
        // An 11th part without a keyframe: segment 2 goes on, nothing starts on that part.
        let MuxOutput::Chunk(mut meta, data) = chunk(11) else { unreachable!() };
        meta.fragment_start = false;
        w.push(MuxOutput::Chunk(meta, data)).unwrap();
        let st = w.stream().read();
        let seg = st.renditions[0].segments.last().unwrap();
        assert_eq!((seg.msn, seg.parts.len(), seg.complete), (2, 11, false));
        assert!(st.renditions[0].segments.iter().all(|s| s.parts.first().is_none_or(|p| p.independent)));
        drop(st);
        assert_eq!(w.stats().segment_count, 1);
        w.push(chunk(21)).unwrap();
        assert_eq!(w.stats().segment_count, 2);
        assert_eq!(w.stats().duration_ns, 2_400_000_000);
    }

    #[test]
    fn delta_update_skips_beyond_the_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = HlsWriter::new(stream_in(dir.path())).unwrap();
        for i in 0..205u64 {
            w.push(chunk(i)).unwrap();
        }
        let st = w.stream().read();
        let full = playlist::render_media(&st, &w.stream().params, 0, MediaOpts { live: false, skip: false, low_latency: true });
        let delta = playlist::render_media(&st, &w.stream().params, 0, MediaOpts { live: false, skip: true, low_latency: true });
        // 0.2 s, then 20 complete segments of 2 s: the last 6 (12 s) stay, 15 are skipped.
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=15\n") && delta.contains("#EXT-X-VERSION:9"), "{delta}");
        assert_eq!(delta.matches("#EXTINF").count(), 6);
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert_eq!(full.matches("#EXTINF").count(), 21);
        // The tails agree.
        let tail = |p: &str| p.split_once("seg_00016.m4s").unwrap().1.to_string();
        assert_eq!(tail(&full), tail(&delta));
    }
}
