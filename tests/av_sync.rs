//! Audio of an egress (issue 4), end to end against the real binary, Chromium, PulseAudio
//! and GStreamer: the page's sound is recorded in sync with its picture, continuous when the
//! page is silent, absent with `video_only`, and never another egress's.
//!
//! `AV_SYNC_SECONDS` lengthens the sync test: `benches/av_sync.sh` runs it for 5 minutes.

mod common;

use std::time::Duration;

use common::av::{analyse, beeps, median};
use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// EBU R37: audio at most 40 ms early and at most 60 ms late.
const EARLY_MS: f64 = -40.0;
const LATE_MS: f64 = 60.0;
/// roomcast's own target, either way.
const TARGET_MS: f64 = 40.0;

/// Issue 4 (5): a flash and a 1 kHz beep once a second, meant to be simultaneous: every pair
/// in the recording is within EBU R37, and the offset does not drift.
#[tokio::test(flavor = "multi_thread")]
async fn flash_and_beep_stay_in_sync() {
    let _serial = SERIAL.lock().await;
    let secs: u64 = std::env::var("AV_SYNC_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let server = Server::start().await;
    let id = server.start_web(&server.page("bench/avsync.html")).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    server.stop(&id, "EGRESS_COMPLETE").await;
    let report = analyse(&local_playlist(&server, &id, "playlist.m3u8"), 30.0);
    let offsets = report.offsets();
    let (min, max) = offsets.iter().fold((f64::MAX, f64::MIN), |(a, b), &o| (a.min(o), b.max(o)));
    let third = offsets.len() / 3;
    let (head, tail) = (median(&offsets[..third.max(1)]), median(&offsets[offsets.len() - third.max(1)..]));
    eprintln!(
        "A/V sync over {secs} s: {} flashes, {} beeps, {} pairs; offset (audio after picture) median {:.1} ms, \
         min {min:.1}, max {max:.1}; first third {head:.1}, last third {tail:.1}; drift {:.2} ms/min",
        report.flashes,
        report.beeps,
        report.pairs.len(),
        median(&offsets),
        report.drift_ms_per_min()
    );
    let log = std::fs::read_to_string(server.tmp.path().join("serve.log")).unwrap_or_default();
    let gaps: Vec<&str> = log.lines().filter(|l| l.contains("captured sound has a gap")).collect();
    let steps = |v: &[f64]| v.windows(2).map(|w| ((w[1] - w[0]) * 1000.0 - 1000.0).round()).collect::<Vec<_>>();
    eprintln!(
        "offsets: {:?}\nflash period - 1 s (ms): {:?}\nbeep period - 1 s (ms): {:?}\nsound gaps: {}\n{}",
        report.pairs.iter().map(|p| (p.at_s.round(), p.offset_ms.round())).collect::<Vec<_>>(),
        steps(&report.flash_s),
        steps(&report.beep_s),
        gaps.len(),
        gaps.join("\n")
    );
    // A beat every second, bar the first and last (cut by start and stop).
    assert!(report.pairs.len() as u64 + 3 >= secs, "{report:?}");
    assert_eq!(report.flashes, report.beeps, "every flash has its beep and no beep is extra: {report:?}");
    for p in &report.pairs {
        assert!((EARLY_MS..=LATE_MS).contains(&p.offset_ms), "outside EBU R37 at {:.1} s: {:.1} ms\n{report:?}", p.at_s, p.offset_ms);
        assert!(p.offset_ms.abs() <= TARGET_MS, "outside ±{TARGET_MS} ms at {:.1} s: {:.1} ms\n{report:?}", p.at_s, p.offset_ms);
    }
    // No drift: all offsets stay within one band as wide as a 30 fps frame (the resolution
    // of a flash onset: which frame first shows it depends on the capture phase) plus 7 ms;
    // a drifting offset would widen it as the run goes on.
    assert!(max - min <= 40.0, "offsets spread over {:.1} ms (first third {head:.1}, last third {tail:.1})\n{report:?}", max - min);
    server.assert_no_leftovers(10 * S).await;
}

/// (pts s, duration s, bytes) of every audio packet.
fn audio_packets(input: &std::path::Path) -> Vec<(f64, f64, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-show_entries", "packet=pts_time,duration_time,size", "-of", "csv=p=0"])
        .arg(input)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<f64> = l.split(',').filter_map(|x| x.parse().ok()).collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"].as_array()?.iter().find(|s| s["codec_type"] == kind)
}

/// Issue 4 (2), (3), (4): AAC-LC 48 kHz stereo by default, continuous even when the page
/// plays nothing (no gaps a player would stall on), named in the multivariant CODECS;
/// `audio_bitrate` honoured; `video_only` has no audio track.
#[tokio::test(flavor = "multi_thread")]
async fn silent_page_gives_continuous_audio_and_video_only_gives_none() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let id = server.start_web(&server.page("demo/static.html")).await;
    // Noise needs an encoder's whole bitrate: there the asked rate shows.
    let noise = server
        .start_egress(json!({"url": server.page("bench/avsync.html?noise=1"), "segment_outputs": [{}], "advanced": {"audio_bitrate": 96}}))
        .await;
    let video_only =
        server.start_egress(json!({"url": server.page("demo/static.html"), "segment_outputs": [{}], "video_only": true})).await;
    for e in [&id, &video_only, &noise] {
        server.wait_status(e, "EGRESS_ACTIVE", 20 * S).await;
    }
    tokio::time::sleep(8 * S).await;
    let (_, master) = server.get_text(&format!("{}/hls/{id}/master.m3u8", server.url)).await;
    assert!(master.contains(",mp4a.40.2\""), "CODECS names the audio: {master}");
    let (_, master_vo) = server.get_text(&format!("{}/hls/{video_only}/master.m3u8", server.url)).await;
    assert!(!master_vo.contains("mp4a"), "{master_vo}");
    for e in [&id, &video_only, &noise] {
        server.stop(e, "EGRESS_COMPLETE").await;
    }

    let playlist = local_playlist(&server, &id, "playlist.m3u8");
    let probe = ffprobe(&playlist.display().to_string());
    let a = stream(&probe, "audio").expect("an audio track");
    assert_eq!((a["codec_name"].as_str(), a["profile"].as_str()), (Some("aac"), Some("LC")), "{a}");
    assert_eq!((a["sample_rate"].as_str(), a["channels"].as_i64()), (Some("48000"), Some(2)), "{a}");
    // Audio covers the picture, packet after packet with no gap.
    let packets = audio_packets(&playlist);
    assert!(packets.len() > 300, "{} audio packets", packets.len());
    for w in packets.windows(2) {
        let gap = w[1].0 - (w[0].0 + w[0].1);
        assert!(gap.abs() < 0.002, "audio gap of {gap:.4} s at {:.3} s", w[0].0);
    }
    let (frames, _) = frames_and_duration(&probe);
    let video_s = frames / 30.0;
    let audio_s = packets.last().map(|p| p.0 + p.1).unwrap() - packets[0].0;
    assert!((audio_s - video_s).abs() < 0.3, "audio {audio_s:.2} s vs video {video_s:.2} s");
    // 96 kbps asked: the noise egress's packets' bytes over their duration.
    let packets = audio_packets(&local_playlist(&server, &noise, "playlist.m3u8"));
    let secs = packets.last().map(|p| p.0 + p.1).unwrap() - packets[0].0;
    let kbps = packets.iter().map(|p| p.2).sum::<f64>() * 8.0 / secs / 1000.0;
    assert!((kbps - 96.0).abs() < 20.0, "audio at {kbps:.0} kbps, asked 96");

    let probe = ffprobe(&local_playlist(&server, &video_only, "playlist.m3u8").display().to_string());
    assert!(stream(&probe, "audio").is_none(), "video_only has no audio track: {probe}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 4 (4): `audio_only` records the page's sound and nothing else: one AAC track, on
/// an LL-HLS grid of whole AAC frames (9 of 1024 samples = 192 ms a part, ten a segment), a
/// multivariant playlist without a picture size, blocking reloads as for any egress.
#[tokio::test(flavor = "multi_thread")]
async fn audio_only_records_the_sound_alone() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let id = server.start_egress(json!({"url": server.page("bench/avsync.html"), "segment_outputs": [{}], "audio_only": true})).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    assert_eq!(server.sound_servers().len(), 1);
    tokio::time::sleep(7 * S).await; // the page beats from 1.5 s in
    let base = format!("{}/hls/{id}", server.url);
    let (status, master) = server.get_text(&format!("{base}/master.m3u8")).await;
    assert_eq!(status, 200, "{master}");
    assert!(master.contains("CODECS=\"mp4a.40.2\"") && !master.contains("RESOLUTION") && !master.contains("avc1"), "{master}");
    let (_, live) = server.get_text(&format!("{base}/live.m3u8")).await;
    assert!(live.contains("#EXT-X-PART-INF:PART-TARGET=0.192\n"), "{live}");
    let parts: Vec<&str> = live.lines().filter(|l| l.starts_with("#EXT-X-PART:")).collect();
    assert!(parts.len() >= 10, "{live}");
    for p in &parts {
        let d: f64 = p.split("DURATION=").nth(1).and_then(|x| x.split(',').next()).and_then(|x| x.parse().ok()).unwrap();
        assert!((d - 0.192).abs() < 0.0005, "every part is 9 AAC frames: {p}\n{live}");
        assert!(p.contains("INDEPENDENT=YES"), "every audio part is independent: {p}");
    }
    let extinf: Vec<f64> =
        live.lines().filter_map(|l| l.strip_prefix("#EXTINF:")).filter_map(|x| x.trim_end_matches(',').parse().ok()).collect();
    assert!(extinf.iter().skip(1).all(|d| (d - 1.92).abs() < 0.0005), "segments of ten parts after the one-part first: {extinf:?}");
    // A blocking reload for the hinted part answers once it exists, and lists it.
    let hint = live.lines().find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:")).expect("a preload hint").to_string();
    let uri = hint.split("URI=\"").nth(1).and_then(|x| x.split('"').next()).unwrap().to_string();
    let (msn, part) = live_next(&live);
    let started = std::time::Instant::now();
    let (status, next) = server.get_text(&format!("{base}/live.m3u8?_HLS_msn={msn}&_HLS_part={part}")).await;
    assert_eq!(status, 200, "{next}");
    assert!(started.elapsed() < 2 * S && next.contains(&format!("URI=\"{uri}\"")), "{hint} not listed:\n{next}");
    server.stop(&id, "EGRESS_COMPLETE").await;

    let playlist = local_playlist(&server, &id, "playlist.m3u8");
    let probe = ffprobe(&playlist.display().to_string());
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "one track: {probe}");
    let a = stream(&probe, "audio").expect("an audio track");
    assert_eq!((a["codec_name"].as_str(), a["sample_rate"].as_str(), a["channels"].as_i64()), (Some("aac"), Some("48000"), Some(2)), "{a}");
    let packets = audio_packets(&playlist);
    for w in packets.windows(2) {
        let gap = w[1].0 - (w[0].0 + w[0].1);
        assert!(gap.abs() < 0.002, "audio gap of {gap:.4} s at {:.3} s", w[0].0);
    }
    let b = beeps(&playlist);
    assert!(b.len() >= 6, "the beeps were recorded: {b:?}");
    for w in b.windows(2) {
        assert!((w[1] - w[0] - 1.0).abs() < 0.003, "a beep a second: {b:?}");
    }
    server.assert_no_leftovers(10 * S).await;
}

/// (msn, part) of the part after the last one a live playlist lists.
fn live_next(live: &str) -> (u64, usize) {
    let seq: u64 = live.lines().find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:")).unwrap().parse().unwrap();
    let (mut msn, mut parts) = (seq, 0);
    for l in live.lines() {
        if l.starts_with("#EXT-X-PART:") {
            parts += 1;
        } else if l.starts_with("#EXTINF:") {
            (msn, parts) = (msn + 1, 0);
        }
    }
    (msn, parts)
}

/// Issue 4 (1), (2): two egresses at once, one beeping, one silent: the silent one records
/// silence, the beeping one its beeps. Each Chromium plays only into its own sound server.
/// The beeping one asks for Opus, which the fMP4 segments carry as CMAF allows.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_egresses_never_hear_each_other() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let loud = server
        .start_egress(json!({"url": server.page("bench/avsync.html"), "segment_outputs": [{}], "advanced": {"audio_codec": "OPUS"}}))
        .await;
    let quiet = server.start_web(&server.page("bench/avsync.html?silent=1")).await;
    server.wait_status(&loud, "EGRESS_ACTIVE", 20 * S).await;
    server.wait_status(&quiet, "EGRESS_ACTIVE", 20 * S).await;
    assert_eq!(server.sound_servers().len(), 2, "one sound server per egress");
    tokio::time::sleep(9 * S).await; // the page beats from 1.5 s in
    let (_, master) = server.get_text(&format!("{}/hls/{loud}/master.m3u8", server.url)).await;
    assert!(master.contains(",opus\""), "CODECS names Opus: {master}");
    server.stop(&loud, "EGRESS_COMPLETE").await;
    server.stop(&quiet, "EGRESS_COMPLETE").await;
    let probe = ffprobe(&local_playlist(&server, &loud, "playlist.m3u8").display().to_string());
    let a = stream(&probe, "audio").expect("an audio track");
    assert_eq!((a["codec_name"].as_str(), a["sample_rate"].as_str()), (Some("opus"), Some("48000")), "{a}");
    let loud = analyse(&local_playlist(&server, &loud, "playlist.m3u8"), 30.0);
    let quiet = analyse(&local_playlist(&server, &quiet, "playlist.m3u8"), 30.0);
    assert!(loud.beeps >= 6, "the beeping egress recorded its beeps: {loud:?}");
    assert!(quiet.flashes >= 6, "the silent page flashed: {quiet:?}");
    assert_eq!(quiet.beeps, 0, "the silent egress heard beeps: {quiet:?}");
    server.assert_no_leftovers(10 * S).await;
}
