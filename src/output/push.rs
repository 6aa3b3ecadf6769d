//! `roomcast push`: one output's remuxer, a process of its own. It reads the egress's main
//! rendition as fragmented MP4 on stdin (init segment, then CMAF chunks from a fragment start
//! on) and remuxes it without re-encoding: FLV to `rtmp2sink` for RTMP(S), MPEG-TS to
//! `srtsink` for SRT, Ogg for an audio file, JPEG snapshots of keyframes for images; or it
//! turns a finished fragmented MP4 file into one with its index first ([`Dest::Remux`]). EOF on
//! stdin ends the output cleanly (EOS, exit 0); an error ends the process with the error on
//! stderr, and its supervisor ([`super::stream`], [`super::file`]) decides what follows. A
//! process per output keeps a dead or slow endpoint from ever touching the encoder, the HLS
//! output or the other outputs.
//!
//! The first stdin line is a JSON [`PushSpec`]: a stream URL never appears on a command line,
//! where every user of the machine could read its stream key. On stdout it prints `connected`
//! once a network server has taken bytes, and `image <path>` for each snapshot written.

use std::io::Read;
use std::os::fd::FromRawFd;

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushSpec {
    pub dest: Dest,
    pub video: bool,
    pub audio: bool,
    /// The sound is Opus (else AAC).
    #[serde(default)]
    pub opus: bool,
}

/// Where a push process sends what it reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Dest {
    /// `rtmp://`, `rtmps://` or `srt://`.
    Stream { url: String },
    /// An Ogg/Opus file (the sound alone).
    Ogg { path: String },
    /// A JPEG of the picture every `interval_secs`, scaled, to `location` (a `%05d` pattern, or
    /// one name overwritten each time).
    Images { location: String, interval_secs: u32, width: u32, height: u32 },
    /// A fragmented MP4 file (`from`, not stdin) rewritten as an MP4 with its index first.
    Remux { from: String, to: String },
}

/// Reads stdin up to the first newline, one byte at a time: everything after it is media for
/// `fdsrc`, so nothing may be read ahead into a buffer.
fn first_line() -> Result<String> {
    // SAFETY: fd 0 is our stdin; ManuallyDrop keeps it open for fdsrc.
    let mut stdin = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte)? {
            0 => bail!("stdin closed before the push spec"),
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
        if line.len() > 64 * 1024 {
            bail!("push spec line too long");
        }
    }
    Ok(String::from_utf8(line)?)
}

/// The remuxing pipeline for `spec`, and the sink's property that takes the destination (set
/// after parsing, so no URL or path needs quoting) with its value. The sink is named `sink`.
fn describe(spec: &PushSpec) -> Result<(String, &'static str, String)> {
    // qtdemux pushes a whole chunk of one track before the other's: queues long enough that
    // the muxer always has both (a chunk is a part, 200 ms by default).
    const Q: &str = "queue max-size-time=5000000000 max-size-buffers=0 max-size-bytes=0";
    let audio_parse = if spec.opus { "opusparse" } else { "aacparse" };
    let (src, mux, sink, prop, value) = match &spec.dest {
        Dest::Stream { url } => match url.split("://").next().unwrap_or("") {
            "rtmp" | "rtmps" => (
                "fdsrc fd=0",
                "flvmux name=m streamable=true",
                "rtmp2sink name=sink async-connect=false sync=false",
                "location",
                url.clone(),
            ),
            "srt" => {
                ("fdsrc fd=0", "mpegtsmux name=m alignment=7", "srtsink name=sink wait-for-connection=false sync=false", "uri", url.clone())
            }
            other => bail!("push: unsupported scheme {other:?}"),
        },
        Dest::Ogg { path } => {
            if !spec.audio || !spec.opus {
                bail!("push: an Ogg file takes Opus sound");
            }
            let d = format!("fdsrc fd=0 ! qtdemux name=d  d.audio_0 ! {Q} ! opusparse ! oggmux ! filesink name=sink sync=false");
            return Ok((d, "location", path.clone()));
        }
        Dest::Images { location, interval_secs, width, height } => {
            if !spec.video {
                bail!("push: images need a picture");
            }
            // Only keyframes are decoded (every segment starts with one): a snapshot costs one
            // decode per GOP, not thirty a second.
            let d = format!(
                "fdsrc fd=0 ! qtdemux name=d  d.video_0 ! {Q} ! h264parse ! identity drop-buffer-flags=delta-unit ! avdec_h264                  ! videoconvert ! videoscale ! videorate ! video/x-raw,width={width},height={height},framerate=1/{}                  ! jpegenc ! multifilesink name=sink post-messages=true sync=false",
                (*interval_secs).max(1)
            );
            return Ok((d, "location", location.clone()));
        }
        Dest::Remux { from, to } => {
            let mut d = "filesrc name=src ! qtdemux name=d  mp4mux name=m faststart=true ! filesink name=sink".to_string();
            if spec.video {
                d.push_str(&format!("  d.video_0 ! {Q} ! h264parse ! m."));
            }
            if spec.audio {
                d.push_str(&format!("  d.audio_0 ! {Q} ! {audio_parse} ! m."));
            }
            // The source's location is set by the caller from `from`.
            let _ = from;
            return Ok((d, "location", to.clone()));
        }
    };
    if spec.opus && spec.audio && matches!(&spec.dest, Dest::Stream { url } if !url.starts_with("srt")) {
        bail!("push: RTMP takes AAC sound, not Opus");
    }
    let mut d = format!("{src} ! qtdemux name=d  {mux} ! {sink}");
    if spec.video {
        d.push_str(&format!("  d.video_0 ! {Q} ! h264parse config-interval=-1 ! m."));
    }
    if spec.audio {
        d.push_str(&format!("  d.audio_0 ! {Q} ! {audio_parse} ! m."));
    }
    if !spec.video && !spec.audio {
        bail!("push: nothing to send");
    }
    Ok((d, prop, value))
}

/// Starts a push process for `spec` (the supervisor's side): its own process group, killed on
/// drop and with its parent, the spec written as its first stdin line. stdout and stderr are
/// piped for the caller.
pub async fn spawn(spec: &PushSpec) -> Result<(tokio::process::Child, tokio::process::ChildStdin)> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = crate::proc::subcommand("push")?;
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    crate::proc::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().context("starting the push process")?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin for the push process"))?;
    let mut line = serde_json::to_vec(spec)?;
    line.push(b'\n');
    stdin.write_all(&line).await.context("sending the push spec")?;
    Ok((child, stdin))
}

/// Entry point of `roomcast push`.
pub fn child_main() -> Result<()> {
    let spec: PushSpec = serde_json::from_str(&first_line()?).context("parsing the push spec")?;
    gst::init()?;
    let (description, prop, value) = describe(&spec)?;
    let pipeline = gst::parse::launch(&description)?.downcast::<gst::Pipeline>().map_err(|_| anyhow!("push: not a pipeline"))?;
    let sink = pipeline.by_name("sink").ok_or_else(|| anyhow!("push: no sink"))?;
    sink.set_property(prop, &value);
    if let (Dest::Remux { from, .. }, Some(src)) = (&spec.dest, pipeline.by_name("src")) {
        src.set_property("location", from);
    }
    pipeline.set_state(gst::State::Playing).context("starting the push pipeline")?;
    // "connected" on stdout once the server has taken bytes: the supervisor's started_at.
    let watched = sink.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if !watched.has_property("stats") {
            return;
        }
        let stats = watched.property::<gst::Structure>("stats");
        let sent = ["out-bytes-total", "bytes-sent-total"].iter().find_map(|f| stats.get::<u64>(*f).ok()).unwrap_or(0);
        if sent > 0 {
            println!("connected");
            return;
        }
    });
    let bus = pipeline.bus().ok_or_else(|| anyhow!("push: no bus"))?;
    let result = loop {
        let Some(msg) =
            bus.timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos, gst::MessageType::Error, gst::MessageType::Element])
        else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(f) = e.structure().filter(|s| s.name() == "GstMultiFileSink").and_then(|s| s.get::<String>("filename").ok()) {
                    println!("image {f}");
                }
            }
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(anyhow!("{}", e.error())),
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(url: &str, video: bool, audio: bool) -> PushSpec {
        PushSpec { dest: Dest::Stream { url: url.into() }, video, audio, opus: false }
    }

    #[test]
    fn pipelines_per_destination_and_tracks() {
        let (d, prop, _) = describe(&stream("rtmp://h/app/key", true, true)).unwrap();
        assert!(d.contains("flvmux") && d.contains("rtmp2sink") && d.contains("aacparse") && prop == "location", "{d}");
        assert!(!d.contains("key"), "the URL is set as a property, never in the description");
        let (d, prop, _) = describe(&stream("srt://h:9000", true, false)).unwrap();
        assert!(d.contains("mpegtsmux") && d.contains("srtsink") && !d.contains("aacparse") && prop == "uri", "{d}");
        assert!(describe(&stream("http://h/", true, true)).is_err());
        let mut opus = stream("rtmp://h/a/k", true, true);
        opus.opus = true;
        assert!(describe(&opus).is_err(), "FLV has no Opus");
        let ogg = PushSpec { dest: Dest::Ogg { path: "/x.ogg".into() }, video: false, audio: true, opus: true };
        assert!(describe(&ogg).unwrap().0.contains("oggmux"));
        let images = PushSpec {
            dest: Dest::Images { location: "/i_%05d.jpeg".into(), interval_secs: 5, width: 320, height: 180 },
            video: true,
            audio: true,
            opus: false,
        };
        let (d, _, _) = describe(&images).unwrap();
        assert!(d.contains("framerate=1/5") && d.contains("width=320") && d.contains("drop-buffer-flags=delta-unit"), "{d}");
    }
}
