//! File and image outputs of the real roomcast (Chromium, GStreamer), checked with ffprobe and
//! ffmpeg: an MP4 that plays while it is written, survives its worker's SIGKILL and is
//! seekable after a normal stop; Ogg/Opus for audio only; JPEG snapshots at an interval.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// Decoded video frames of a file (ffprobe counting them).
fn frames(path: &std::path::Path) -> f64 {
    let probe = ffprobe(&path.display().to_string());
    video_stream(&probe)["nb_read_frames"].as_str().unwrap().parse().unwrap()
}

/// Where the moov box sits among the top-level boxes (its index), and how many moofs follow.
fn top_boxes(path: &std::path::Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut at = 0usize;
    let mut boxes = vec![];
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        boxes.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        let size = if size == 1 { u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize } else { size };
        if size < 8 {
            break;
        }
        at += size;
    }
    boxes
}

/// Issue 7 (3), (5): an MP4 file output plays while the egress still runs (fragments on disk),
/// still plays after the worker is killed with SIGKILL (every fragment written so far), and
/// after a normal stop is an MP4 with its index first that seeks; FileInfo reports it.
#[tokio::test(flavor = "multi_thread")]
async fn mp4_survives_sigkill_and_is_seekable_after_stop() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;

    // Normal stop.
    let id = server.start_egress(json!({"url": server.page("demo/animated.html"), "file_outputs": [{"filepath": "rec/take1.mp4"}]})).await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    let since = Instant::now();
    tokio::time::sleep(5 * S).await;
    let path = server.out.join(&id).join("rec/take1.mp4");
    // While it is written: init plus fragments, playable as it is.
    let live = frames(&path);
    assert!(live >= 60.0, "{live} frames readable while recording");
    assert!(top_boxes(&path).iter().any(|b| b == "moof"), "fragmented while written");
    tokio::time::sleep(3 * S).await;
    let ran = since.elapsed().as_secs_f64();
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let f = &done["fileResults"][0];
    assert_eq!(f["filename"], "rec/take1.mp4", "{done}");
    assert_eq!(f["location"].as_str(), Some(path.display().to_string().as_str()));
    let size: u64 = f["size"].as_str().unwrap().parse().unwrap();
    assert_eq!(size, std::fs::metadata(&path).unwrap().len());
    let boxes = top_boxes(&path);
    let moov = boxes.iter().position(|b| b == "moov").expect("a moov");
    let mdat = boxes.iter().position(|b| b == "mdat").expect("an mdat");
    assert!(moov < mdat && !boxes.iter().any(|b| b == "moof"), "index first, not fragmented: {boxes:?}");
    let probe = ffprobe(&path.display().to_string());
    let (n, duration) = frames_and_duration(&probe);
    assert!((duration - ran).abs() <= 1.5, "{duration:.2} s in the file, {ran:.2} s recorded");
    assert!((n / duration - 30.0).abs() <= 1.0, "{n} frames in {duration:.2} s");
    assert!(probe["streams"].as_array().unwrap().iter().any(|s| s["codec_name"] == "aac"), "{probe}");
    let reported: f64 = f["duration"].as_str().unwrap().parse::<f64>().unwrap() / 1e9;
    assert!((reported - duration).abs() <= 0.5, "FileInfo says {reported:.2} s");
    // Seeking: a frame decodes from the middle.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{:.1}", duration / 2.0), "-i"])
        .arg(&path)
        .args(["-frames:v", "1", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "seek: {}", String::from_utf8_lossy(&out.stderr));

    // SIGKILL of the worker: what was written stays and plays.
    let id = server
        .start_egress(
            json!({"url": server.page("demo/animated.html"), "file_outputs": [{"filepath": "killed.mp4"}], "segment_outputs": [{}]}),
        )
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(6 * S).await;
    let path = server.out.join(&id).join("killed.mp4");
    let before = frames(&path);
    for pid in server.workers() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let end = server.wait_ended(&id, 30 * S).await;
    assert_eq!(end["status"], "EGRESS_FAILED", "{end}");
    let after = frames(&path);
    assert!(after >= before && after >= 150.0, "{before} frames before the kill, {after} after");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 7 (3), (4): audio only to an Ogg/Opus file; JPEG snapshots every 2 s at 320×180
/// beside the picture, counted in ImagesInfo.
#[tokio::test(flavor = "multi_thread")]
async fn ogg_audio_and_image_snapshots() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;

    let id = server
        .start_egress(json!({"url": server.page("bench/avsync.html"), "audio_only": true, "file_outputs": [{"file_type": "OGG", "filepath": "sound.ogg"}]}))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(5 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let path = server.out.join(&id).join("sound.ogg");
    let probe = ffprobe(&path.display().to_string());
    let a = &probe["streams"][0];
    assert_eq!((a["codec_name"].as_str(), a["sample_rate"].as_str()), (Some("opus"), Some("48000")), "{probe}");
    assert_eq!(probe["format"]["format_name"], "ogg");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(duration > 4.0, "{duration} s of sound");
    // The page beeps once a second: the sound is there, not silence.
    let beeps = common::av::beeps(&path);
    assert!(beeps.len() >= 3, "beeps at {beeps:?}");
    assert_eq!(done["fileResults"][0]["filename"], "sound.ogg", "{done}");

    let id = server
        .start_egress(json!({
            "url": server.page("demo/animated.html"),
            "segment_outputs": [{}],
            "image_outputs": [{"capture_interval": 2, "width": 320, "height": 180, "filename_prefix": "thumbs/t"}],
        }))
        .await;
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    tokio::time::sleep(9 * S).await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    let dir = server.out.join(&id).join("thumbs");
    let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert!((4..=6).contains(&names.len()), "one image per 2 s of ~9 s: {names:?}");
    assert_eq!(names[0], "t_00000.jpeg", "{names:?}");
    let probe = ffprobe(&dir.join(&names[0]).display().to_string());
    let v = video_stream(&probe);
    assert_eq!((v["codec_name"].as_str(), v["width"].as_i64(), v["height"].as_i64()), (Some("mjpeg"), Some(320), Some(180)));
    let count: usize = done["imageResults"][0]["imageCount"].as_str().unwrap().parse().unwrap();
    assert_eq!(count, names.len(), "{done}");
    assert_eq!(done["imageResults"][0]["filenamePrefix"], "thumbs/t");
    // Bad input: images without a picture, OGG with one.
    let (code, err) =
        server.twirp("StartWebEgress", json!({"url": server.page("demo/static.html"), "audio_only": true, "image_outputs": [{}]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let (code, err) =
        server.twirp("StartWebEgress", json!({"url": server.page("demo/static.html"), "file_outputs": [{"file_type": "OGG"}]})).await;
    assert_eq!((code, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    server.assert_no_leftovers(10 * S).await;
}

/// Issue 17 (6): serve SIGKILLed mid-egress and started again on the same output folder: the
/// egress is listed FAILED "service restarted", StopEgress answers failed_precondition, its
/// playlist is closed and plays from the origin, its MP4 is rewritten index first; an egress
/// that had ended before is listed as it ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_serve_lists_and_closes_what_it_had() {
    let _serial = SERIAL.lock().await;
    let mut first = Server::start().await;
    let done = first.start_web(&first.page("demo/animated.html")).await;
    first.wait_segments(&done, 1, 20 * S).await;
    first.stop(&done, "EGRESS_COMPLETE").await;
    let id = first
        .start_egress(json!({"url": first.page("demo/animated.html"), "file_outputs": [{"filepath": "rec.mp4"}], "segment_outputs": [{}]}))
        .await;
    first.wait_segments(&id, 2, 20 * S).await;
    tokio::time::sleep(2 * S).await;
    first.kill();
    // Its worker sees its pipe close and stops by itself (it has no parent-death signal, and
    // gives its pipeline up to 10 s to drain); the outputs are serve's, so nothing finishes them.
    let deadline = Instant::now() + 30 * S;
    while !(first.workers().is_empty() && first.chromium_pids().is_empty()) {
        assert!(Instant::now() < deadline, "the killed serve's processes are gone");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let playlist = first.out.join(&id).join("playlist.m3u8");
    assert!(!std::fs::read_to_string(&playlist).unwrap().contains("#EXT-X-ENDLIST"), "left open by the kill");

    let second = Server::start_on("{}\n", Some(&first.out)).await;
    let (_, list) = second.twirp("ListEgress", json!({})).await;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let find = |eid: &str| items.iter().find(|i| i["egressId"] == eid).cloned().unwrap_or_default();
    let interrupted = find(&id);
    assert_eq!(
        (interrupted["status"].as_str(), interrupted["error"].as_str()),
        (Some("EGRESS_FAILED"), Some("service restarted")),
        "{list}"
    );
    assert_eq!(find(&done)["status"], "EGRESS_COMPLETE", "{list}");
    let (code, err) = second.twirp("StopEgress", json!({"egress_id": id})).await;
    assert_eq!((code, err["code"].as_str()), (412, Some("failed_precondition")), "{err}");
    let url = format!("{}/hls/{id}/playlist.m3u8", second.url);
    let (code, text) = second.get_text(&url).await;
    assert!(code == 200 && text.trim_end().ends_with("#EXT-X-ENDLIST"), "{code} {text}");
    let probe = ffprobe(&url);
    let (_, duration) = frames_and_duration(&probe);
    assert!(duration >= 3.0, "the closed playlist plays: {duration:.2} s");
    let mp4 = first.out.join(&id).join("rec.mp4");
    let deadline = Instant::now() + 30 * S;
    loop {
        let boxes = top_boxes(&mp4);
        let first_of = |b: &str| boxes.iter().position(|x| x == b);
        if matches!((first_of("moov"), first_of("mdat")), (Some(m), Some(d)) if m < d) && first_of("moof").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the MP4 is rewritten index first: {boxes:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, duration) = frames_and_duration(&ffprobe(&mp4.display().to_string()));
    assert!(duration >= 3.0, "the MP4 plays: {duration:.2} s");
    assert!(std::fs::read_dir(first.out.join(&id)).unwrap().flatten().all(|e| !e.file_name().to_string_lossy().ends_with(".tmp")));
}

/// A small file system of its own, mounted for one test (tmpfs; the tests run as root, as
/// their network namespaces need) and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t tmpfs (the tests run as root)");
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Issue 17 (6): the disk fills up mid-egress. The egress ends FAILED saying so, and nothing
/// written before is lost: every segment the playlist on disk lists is there and plays, and
/// the MP4 decodes every frame it holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_egress_and_keeps_what_was_written() {
    let _serial = SERIAL.lock().await;
    let disk = SmallDisk::mount("6m");
    let out = disk.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let server = Server::start_on("{}\n", Some(&out)).await;
    let id = server
        .start_egress(json!({"url": server.page("bench/clock.html"), "file_outputs": [{"filepath": "rec.mp4"}], "segment_outputs": [{}]}))
        .await;
    let end = server.wait_ended(&id, 90 * S).await;
    assert_eq!(end["status"], "EGRESS_FAILED", "{end}");
    let error = end["error"].as_str().unwrap();
    assert!(error.contains("No space left on device"), "{end}");
    let dir = out.join(&id);
    let playlist = std::fs::read_to_string(dir.join("playlist.m3u8")).unwrap();
    // Closed even so: the folder's reserve was given back for the final playlists.
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "half-written files and the reserve are gone: {leftovers:?}");
    let segments: Vec<&str> = playlist.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(segments.len() >= 2, "{playlist}");
    for s in &segments {
        assert!(dir.join(s).is_file(), "{s} is listed and gone:\n{playlist}");
    }
    let probe = ffprobe(&dir.join("playlist.m3u8").display().to_string());
    let (frames_hls, duration) = frames_and_duration(&probe);
    assert!(duration >= 2.0 && frames_hls >= 60.0, "the playlist on disk plays: {duration:.2} s, {frames_hls} frames");
    let mp4 = frames(&dir.join("rec.mp4"));
    assert!(mp4 >= 60.0, "the MP4 keeps its frames: {mp4}");
    eprintln!("full disk: {} segments, {duration:.1} s of HLS, {mp4} MP4 frames", segments.len());
    drop(server);
    drop(disk);
}
