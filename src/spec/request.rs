//! LiveKit requests → [`JobSpec`]: every field checked (a bad one is a [`SpecError`], which the
//! API answers as Twirp `invalid_argument` or `unimplemented`), defaults filled in, output
//! names made safe, and for room composites the template URL with the recorder's token.

use livekit_protocol as proto;

use super::encoding::{audio_spec, video_spec, Encoding};
use super::names::{check_collisions, file_path, output_name, Placeholders};
use super::room::{check_layout, recorder_token, template_url};
use super::timing::HlsTiming;
use super::types::*;
use super::url::{check_page_url, check_reachable, stream_url};
use super::SpecError;
use crate::config::Config;

/// The [`RequestOutputs`] of a request: web and room composite requests have the same output fields,
/// each with its own type for the deprecated single `output` oneof.
macro_rules! outputs_of {
    ($req:expr, $Output:path) => {{
        use $Output as O;
        let mut o = RequestOutputs {
            segments: $req.segment_outputs.iter().collect(),
            files: $req.file_outputs.iter().collect(),
            streams: $req.stream_outputs.iter().collect(),
            images: $req.image_outputs.iter().collect(),
        };
        match &$req.output {
            Some(O::Segments(s)) => o.segments.push(s),
            Some(O::Stream(s)) => o.streams.push(s),
            Some(O::File(f)) => o.files.push(f),
            None => {}
        }
        o
    }};
}

/// The outputs a request names, whichever request it is.
struct RequestOutputs<'a> {
    segments: Vec<&'a proto::SegmentedFileOutput>,
    files: Vec<&'a proto::EncodedFileOutput>,
    streams: Vec<&'a proto::StreamOutput>,
    images: Vec<&'a proto::ImageOutput>,
}

impl<'a> RequestOutputs<'a> {
    /// The segment output (at most one) and the stream URLs.
    fn check(&self) -> Result<(Option<&'a proto::SegmentedFileOutput>, Vec<String>), SpecError> {
        if self.segments.len() > 1 {
            return Err(SpecError::invalid("at most one segment output per egress"));
        }
        let mut urls = vec![];
        for s in &self.streams {
            if s.urls.is_empty() {
                return Err(SpecError::invalid("a stream output needs at least one url"));
            }
            for u in &s.urls {
                let u = stream_url(u, s.protocol)?;
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
        }
        if urls.len() > MAX_STREAM_URLS {
            return Err(SpecError::invalid(format!("at most {MAX_STREAM_URLS} stream urls per egress")));
        }
        if self.segments.is_empty() && urls.is_empty() && self.files.is_empty() && self.images.is_empty() {
            return Err(SpecError::invalid("no output: add a segment, stream, file or image output"));
        }
        Ok((self.segments.first().copied(), urls))
    }

    /// The file outputs (at most one), for a picture or not.
    fn files(&self, has_video: bool, ph: &Placeholders) -> Result<Vec<FileSpec>, SpecError> {
        if self.files.len() > 1 {
            return Err(SpecError::invalid("at most one file output per egress"));
        }
        let mut out = vec![];
        for f in &self.files {
            if f.output.is_some() {
                return Err(SpecError::Unsupported(
                    "cloud uploads (s3/gcp/azure/aliOSS) are not supported: files are written to the egress's folder".into(),
                ));
            }
            use proto::EncodedFileType as T;
            let kind = match T::try_from(f.file_type).map_err(|_| SpecError::invalid("unknown file_type"))? {
                T::DefaultFiletype if has_video => FileKind::Mp4,
                T::DefaultFiletype => FileKind::Ogg,
                T::Mp4 => FileKind::Mp4,
                T::Ogg if has_video => return Err(SpecError::invalid("OGG files hold sound only: use MP4 with a picture, or audio_only")),
                T::Ogg => FileKind::Ogg,
                other => return Err(SpecError::Unsupported(format!("file type {} is not supported", other.as_str_name()))),
            };
            let ext = match kind {
                FileKind::Mp4 => ".mp4",
                FileKind::Ogg => ".ogg",
            };
            let filepath = file_path(&f.filepath, ext, ph)?;
            out.push(FileSpec { filepath, kind });
        }
        Ok(out)
    }

    /// The image outputs, sized against the picture.
    fn images(&self, video: Option<&VideoSpec>, ph: &Placeholders) -> Result<Vec<ImageSpec>, SpecError> {
        if self.images.len() > 4 {
            return Err(SpecError::invalid("at most 4 image outputs per egress"));
        }
        let mut out = vec![];
        for i in &self.images {
            let Some(v) = video else { return Err(SpecError::invalid("image outputs need a picture (not audio_only)")) };
            if i.output.is_some() {
                return Err(SpecError::Unsupported("cloud uploads are not supported: images are written to the egress's folder".into()));
            }
            if proto::ImageCodec::try_from(i.image_codec).map_err(|_| SpecError::invalid("unknown image_codec"))?
                != proto::ImageCodec::IcDefault
                && i.image_codec != proto::ImageCodec::IcJpeg as i32
            {
                return Err(SpecError::Unsupported("image codec: JPEG only".into()));
            }
            let (width, height) = match (i.width, i.height) {
                (0, 0) => (v.width, v.height),
                (w, h) if (16..=3840).contains(&w) && (16..=3840).contains(&h) && w % 2 == 0 && h % 2 == 0 => (w as u32, h as u32),
                _ => {
                    return Err(SpecError::invalid(
                        "image width and height must be even and within 16..=3840 (or both 0: the picture's size)",
                    ))
                }
            };
            let interval_secs = match i.capture_interval {
                0 => 10,
                n if n <= 3600 => n,
                _ => return Err(SpecError::invalid("capture_interval must be at most 3600 seconds")),
            };
            use proto::ImageFileSuffix as X;
            let suffix = match X::try_from(i.filename_suffix).map_err(|_| SpecError::invalid("unknown filename_suffix"))? {
                X::ImageSuffixIndex => ImageSuffix::Index,
                X::ImageSuffixTimestamp => ImageSuffix::Timestamp,
                X::ImageSuffixNoneOverwrite => ImageSuffix::Overwrite,
            };
            let filename_prefix = output_name(&i.filename_prefix, "image", "filename_prefix", ph)?;
            out.push(ImageSpec { filename_prefix, interval_secs, width, height, suffix });
        }
        Ok(out)
    }
}

fn hls_spec(out: &proto::SegmentedFileOutput, video: Option<&VideoSpec>, cfg: &Config, ph: &Placeholders) -> Result<HlsSpec, SpecError> {
    if out.output.is_some() {
        return Err(SpecError::Unsupported(
            "cloud uploads (s3/gcp/azure/aliOSS) are not supported: roomcast serves segments from its own origin".into(),
        ));
    }
    let playlist_name = output_name(&out.playlist_name, "playlist.m3u8", "playlist_name", ph)?;
    let live_playlist_name = output_name(&out.live_playlist_name, "live.m3u8", "live_playlist_name", ph)?;
    for n in [&playlist_name, &live_playlist_name] {
        if !n.ends_with(".m3u8") {
            return Err(SpecError::invalid(format!("playlist name {n:?} must end in .m3u8")));
        }
    }
    if playlist_name == live_playlist_name {
        return Err(SpecError::invalid("playlist_name and live_playlist_name must differ"));
    }
    if playlist_name == MULTIVARIANT_NAME || live_playlist_name == MULTIVARIANT_NAME {
        return Err(SpecError::invalid(format!("{MULTIVARIANT_NAME} is the multivariant playlist's name; choose another playlist name")));
    }
    let segment_prefix = output_name(&out.filename_prefix, "segment", "filename_prefix", ph)?;
    let segment_duration = match out.segment_duration {
        0 => cfg.hls.segment_duration,
        d if (1..=20).contains(&d) => d,
        _ => return Err(SpecError::invalid("segment_duration must be within 1..=20 seconds")),
    };
    Ok(HlsSpec {
        playlist_name,
        live_playlist_name,
        segment_prefix,
        segment_duration,
        part_duration_ms: cfg.hls.part_duration_ms,
        live_window: cfg.hls.live_window,
        // A rung as large as the main picture would only repeat it; no picture, no rungs.
        ladder: match video {
            Some(v) => cfg.hls.ladder.iter().filter(|r| r.width < v.width && r.height < v.height).cloned().collect(),
            None => vec![],
        },
    })
}

impl JobSpec {
    // The deprecated single-output fields are still what older SDKs send.
    #[allow(deprecated)]
    pub fn from_web_request(egress_id: &str, req: &proto::WebEgressRequest, cfg: &Config) -> Result<Self, SpecError> {
        let url = check_page_url(&req.url)?;
        check_reachable(&url, &cfg.egress_policy(), "url")?;
        let outputs = outputs_of!(req, proto::web_egress_request::Output);
        let ph = Placeholders::at(crate::clock::unix_ms(), None);
        let mut spec = Self::build(egress_id, url, req.audio_only, req.video_only, req.options.as_ref().into(), outputs, cfg, &ph)?;
        spec.await_start_signal = req.await_start_signal;
        Ok(spec)
    }

    /// A room composite: the template (ours, or the request's `custom_base_url`) joins
    /// `room_name` as a hidden recorder with a token minted here, and recording starts at its
    /// START_RECORDING.
    #[allow(deprecated)]
    pub fn from_room_request(egress_id: &str, req: &proto::RoomCompositeEgressRequest, cfg: &Config) -> Result<Self, SpecError> {
        Self::from_room_request_in(egress_id, req, cfg, None)
    }

    /// [`Self::from_room_request`] for a room whose id the caller knows (livekit-server sends
    /// the room's sid); without one, `{room_id}` is the room name.
    #[allow(deprecated)]
    pub fn from_room_request_in(
        egress_id: &str,
        req: &proto::RoomCompositeEgressRequest,
        cfg: &Config,
        room_id: Option<&str>,
    ) -> Result<Self, SpecError> {
        let room = req.room_name.trim();
        if room.is_empty() {
            return Err(SpecError::invalid("room_name is required"));
        }
        if room.len() > 256 || room.chars().any(char::is_control) {
            return Err(SpecError::invalid("room_name must be at most 256 characters, without control characters"));
        }
        check_layout(&req.layout)?;
        let base = match req.custom_base_url.as_str() {
            "" => cfg.template_base(),
            custom => {
                let url = check_page_url(custom).map_err(|e| SpecError::invalid(format!("custom_base_url: {e}")))?;
                check_reachable(&url, &cfg.egress_policy(), "custom_base_url")?;
                url
            }
        };
        let base = url::Url::parse(&base).map_err(|e| SpecError::invalid(format!("template base {base:?}: {e}")))?;
        let (key, secret) = cfg.sfu_keys().map_err(|e| SpecError::invalid(format!("{e:#}")))?;
        let ttl = std::time::Duration::from_secs(cfg.room.token_ttl_secs);
        let token = recorder_token(&key, &secret, room, egress_id, ttl).map_err(|e| SpecError::invalid(format!("{e:#}")))?;
        let url = template_url(&base, cfg.room.sfu, &cfg.room.url, &token, &req.layout);
        let outputs = outputs_of!(req, proto::room_composite_egress_request::Output);
        let ph = Placeholders::at(crate::clock::unix_ms(), Some((room, room_id.filter(|i| !i.is_empty()).unwrap_or(room))));
        let mut spec = Self::build(egress_id, url, req.audio_only, req.video_only, req.options.as_ref().into(), outputs, cfg, &ph)?;
        spec.await_start_signal = true;
        spec.start_timeout_secs = cfg.room.start_timeout_secs;
        spec.room = Some(RoomSpec { room_name: room.to_string(), layout: req.layout.clone(), sfu: cfg.room.sfu });
        Ok(spec)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        egress_id: &str,
        url: String,
        audio_only: bool,
        video_only: bool,
        encoding: Encoding,
        outputs: RequestOutputs,
        cfg: &Config,
        ph: &Placeholders,
    ) -> Result<Self, SpecError> {
        if audio_only && video_only {
            return Err(SpecError::invalid("audio_only and video_only cannot both be set"));
        }
        let (seg, streams) = outputs.check()?;
        let policy = cfg.egress_policy();
        for u in &streams {
            check_reachable(u, &policy, &format!("stream url {:?}", super::url::redact(u)))?;
        }
        let has_video = !audio_only;
        // Without a segment output the muxer still cuts on the HLS grid (stream outputs take
        // its chunks), but nothing is served or written.
        let default_seg = proto::SegmentedFileOutput::default();
        // Checked even for audio_only, so a bad request is refused the same either way.
        let video = video_spec(encoding, cfg)?;
        let files = outputs.files(has_video, ph)?;
        let mut audio = if video_only { None } else { Some(audio_spec(encoding, cfg)?) };
        let video = if audio_only { None } else { Some(video) };
        let images = outputs.images(video.as_ref(), ph)?;
        if files.iter().any(|f| f.kind == FileKind::Ogg) {
            // An Ogg file holds Opus: the egress's sound is Opus (unless AAC was asked for).
            let asked_aac = matches!(encoding, Encoding::Advanced(a) if a.audio_codec == proto::AudioCodec::Aac as i32);
            match audio.as_mut() {
                None => return Err(SpecError::invalid("an OGG file needs sound (not video_only)")),
                Some(_) if asked_aac => return Err(SpecError::invalid("an OGG file holds Opus: audio_codec AAC cannot go in it")),
                Some(a) => a.codec = AudioCodec::Opus,
            }
        }
        if !streams.is_empty()
            && audio.as_ref().is_some_and(|a| a.codec == AudioCodec::Opus)
            && streams.iter().any(|u| !u.starts_with("srt:"))
        {
            return Err(SpecError::invalid("RTMP carries AAC sound, not Opus"));
        }
        let hls = hls_spec(seg.unwrap_or(&default_seg), video.as_ref(), cfg, ph)?;
        check_collisions(seg.map(|_| &hls), &files, &images)?;
        Ok(JobSpec {
            egress_id: egress_id.to_string(),
            url,
            await_start_signal: false,
            start_timeout_secs: cfg.timeouts.start_secs,
            hls: Some(hls),
            serve_hls: seg.is_some(),
            streams,
            files,
            images,
            video,
            audio,
            browser: BrowserSpec::from_config(cfg),
            room: None,
        })
    }
}

impl JobSpec {
    /// The audio track's bitrate, 0 without audio.
    pub fn audio_kbps(&self) -> u32 {
        self.audio.as_ref().map(|a| a.bitrate_kbps).unwrap_or(0)
    }

    /// The timing grid of this egress's HLS output.
    pub fn timing(&self, hls: &HlsSpec) -> HlsTiming {
        HlsTiming::new(self.video.as_ref(), self.audio.as_ref(), hls)
    }
}

impl BrowserSpec {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            chromium_path: cfg.chromium.path.display().to_string(),
            headless_shell_path: cfg.capture.headless_shell_path.display().to_string(),
            x_server: cfg.capture.x_server,
            xorg_path: cfg.capture.xorg_path.display().to_string(),
            xvfb_path: cfg.capture.xvfb_path.display().to_string(),
            extra_flags: cfg.chromium.extra_flags.clone(),
            // The same for every egress, so a warm browser fits room and web egresses alike.
            network: cfg.egress_policy(),
            recovery: cfg.recovery,
        }
    }
}
