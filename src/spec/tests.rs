//! Unit tests of request → spec: defaults, presets, bad input, the timing grid, room composites.

use super::*;
use crate::config::Config;
use livekit_protocol as proto;
use proto::web_egress_request::Options;

fn req(url: &str) -> proto::WebEgressRequest {
    proto::WebEgressRequest { url: url.into(), segment_outputs: vec![proto::SegmentedFileOutput::default()], ..Default::default() }
}

#[test]
fn defaults_are_720p30_with_2s_keyframes() {
    let spec = JobSpec::from_web_request("EG_x", &req("http://example.com/a"), &Config::default()).unwrap();
    let v = spec.video.as_ref().unwrap();
    assert_eq!((v.width, v.height, v.framerate), (1280, 720, 30));
    assert_eq!(v.bitrate_kbps, 3000);
    assert_eq!(v.keyframe_interval, 2.0);
    let hls = spec.hls.unwrap();
    assert_eq!((hls.playlist_name.as_str(), hls.segment_duration), ("playlist.m3u8", 2));
}

#[test]
fn preset_and_advanced_are_honoured() {
    let mut r = req("https://example.test/");
    r.options = Some(Options::Preset(proto::EncodingOptionsPreset::H2641080p30 as i32));
    let v = JobSpec::from_web_request("e", &r, &Config::default()).unwrap().video.unwrap();
    assert_eq!((v.width, v.height, v.bitrate_kbps), (1920, 1080, 4500));
    r.options = Some(Options::Advanced(proto::EncodingOptions {
        width: 640,
        height: 360,
        framerate: 25,
        video_bitrate: 800,
        key_frame_interval: 1.0,
        video_codec: proto::VideoCodec::H264High as i32,
        ..Default::default()
    }));
    let v = JobSpec::from_web_request("e", &r, &Config::default()).unwrap().video.unwrap();
    assert_eq!((v.width, v.height, v.framerate, v.bitrate_kbps, v.keyframe_interval), (640, 360, 25, 800, 1.0));
    assert_eq!(v.profile, "high");
}

#[test]
fn bad_input_is_invalid_argument() {
    let cfg = Config::default();
    for url in ["file:///etc/passwd", "javascript:alert(1)", "not a url", ""] {
        assert!(matches!(JobSpec::from_web_request("e", &req(url), &cfg), Err(SpecError::Invalid(_))), "{url}");
    }
    let mut r = req("http://a/");
    r.options = Some(Options::Advanced(proto::EncodingOptions { width: 641, height: 360, ..Default::default() }));
    assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    let mut r = req("http://a/");
    r.segment_outputs[0].playlist_name = "../../etc/x.m3u8".into();
    assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    let mut r = req("http://a/");
    r.segment_outputs.clear();
    assert!(matches!(JobSpec::from_web_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
}

#[test]
fn timing_is_frame_exact() {
    let mut spec = JobSpec::from_web_request("e", &req("http://a/"), &Config::default()).unwrap();
    let t = spec.timing(spec.hls.as_ref().unwrap());
    assert_eq!((t.part_frames, t.segment_frames, t.part_ns(), t.target_duration()), (6, 60, 200_000_000, 2));
    assert_eq!(t.part_target(), 0.2);
    // 250 ms at 30 fps is 7.5 frames: rounded to 8 frames, PART-TARGET ceiled to the ms.
    spec.hls.as_mut().unwrap().part_duration_ms = 250;
    let t = spec.timing(spec.hls.as_ref().unwrap());
    assert_eq!((t.part_frames, t.part_target()), (8, 0.267));
    // A GOP longer than the segment stretches segments to whole GOPs.
    spec.hls.as_mut().unwrap().part_duration_ms = 200;
    spec.video.as_mut().unwrap().keyframe_interval = 3.0;
    let t = spec.timing(spec.hls.as_ref().unwrap());
    assert_eq!((t.segment_frames, t.target_duration()), (90, 3));
}

#[test]
fn audio_only_has_no_picture_and_an_aac_frame_grid() {
    let mut r = req("http://a/");
    r.audio_only = true;
    let spec = JobSpec::from_web_request("e", &r, &Config::default()).unwrap();
    assert!(spec.video.is_none() && spec.audio.is_some());
    let t = spec.timing(spec.hls.as_ref().unwrap());
    // 200 ms is 9.4 AAC frames at 48 kHz: 9 frames (192 ms) a part, ten parts a segment.
    assert_eq!((t.part_frames, t.segment_frames, t.part_target(), t.target_duration()), (9, 90, 0.192, 2));
    assert_eq!(t.part_ns(), 192_000_000);
    // Opus frames are 20 ms: 200 ms parts exactly.
    r.options = Some(Options::Advanced(proto::EncodingOptions { audio_codec: proto::AudioCodec::Opus as i32, ..Default::default() }));
    let spec = JobSpec::from_web_request("e", &r, &Config::default()).unwrap();
    let t = spec.timing(spec.hls.as_ref().unwrap());
    assert_eq!((t.part_frames, t.segment_frames, t.part_ns(), t.part_target()), (10, 100, 200_000_000, 0.2));
    r.video_only = true;
    assert!(matches!(JobSpec::from_web_request("e", &r, &Config::default()), Err(SpecError::Invalid(_))));
}

#[test]
fn multivariant_name_is_reserved() {
    let mut r = req("http://a/");
    r.segment_outputs[0].playlist_name = MULTIVARIANT_NAME.into();
    assert!(matches!(JobSpec::from_web_request("e", &r, &Config::default()), Err(SpecError::Invalid(_))));
}

fn room_req(room: &str) -> proto::RoomCompositeEgressRequest {
    proto::RoomCompositeEgressRequest {
        room_name: room.into(),
        layout: "speaker".into(),
        segment_outputs: vec![proto::SegmentedFileOutput::default()],
        ..Default::default()
    }
}

#[test]
fn room_composite_opens_the_template_with_livekits_parameters() {
    let mut cfg = Config::default();
    cfg.room.url = "ws://10.1.2.3:7880".into();
    let spec = JobSpec::from_room_request("EG_r", &room_req("my room"), &cfg).unwrap();
    assert!(spec.await_start_signal);
    assert_eq!(spec.start_timeout_secs, cfg.room.start_timeout_secs);
    let u = ::url::Url::parse(&spec.url).unwrap();
    assert_eq!(u.path(), "/templates/room/index.html");
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    assert_eq!((q["layout"].as_str(), q["url"].as_str()), ("speaker", "ws://10.1.2.3:7880"));
    assert!(!q.contains_key("sfu"));
    let claims = livekit_api::access_token::TokenVerifier::with_api_key(crate::config::DEV_API_KEY, crate::config::DEV_API_SECRET)
        .verify(&q["token"])
        .unwrap();
    assert_eq!((claims.sub.as_str(), claims.video.room.as_str()), ("EG_r", "my room"));
    // The SFU the operator configured is reachable, in a private range or not; only its port.
    assert_eq!(spec.browser.network.judge_host("10.1.2.3", 7880), crate::net::Verdict::Allowed);
    assert!(matches!(spec.browser.network.judge_host("10.1.2.3", 80), crate::net::Verdict::Refused(_)));
    assert_eq!(spec.room.as_ref().map(|r| r.layout.as_str()), Some("speaker"));
    // A custom base keeps its own query; the parameters follow it.
    let mut r = room_req("x");
    r.custom_base_url = "http://example.com:9/tpl.html?v=2".into();
    let spec = JobSpec::from_room_request("EG_r", &r, &cfg).unwrap();
    assert!(spec.url.starts_with("http://example.com:9/tpl.html?v=2&layout=speaker&token="), "{}", spec.url);
    // The SFU's own keys sign the recorder's token when they are configured.
    (cfg.room.api_key, cfg.room.api_secret) = (Some("lk".into()), Some("lk-secret-lk-secret-lk-secret-00".into()));
    let spec = JobSpec::from_room_request("EG_r", &room_req("x"), &cfg).unwrap();
    let token = ::url::Url::parse(&spec.url).unwrap().query_pairs().find(|(k, _)| k == "token").unwrap().1.into_owned();
    assert!(livekit_api::access_token::TokenVerifier::with_api_key("lk", "lk-secret-lk-secret-lk-secret-00").verify(&token).is_ok());
}

#[test]
fn room_composite_audio_and_video_only() {
    let cfg = Config::default();
    let mut r = room_req("x");
    r.audio_only = true;
    let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
    assert!(spec.video.is_none() && spec.audio.is_some());
    r.audio_only = false;
    r.video_only = true;
    let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
    assert!(spec.video.is_some() && spec.audio.is_none());
    r.audio_only = true;
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    let mut r = room_req("x");
    r.options = Some(proto::room_composite_egress_request::Options::Preset(proto::EncodingOptionsPreset::H2641080p30 as i32));
    let v = JobSpec::from_room_request("e", &r, &cfg).unwrap().video.unwrap();
    assert_eq!((v.width, v.height), (1920, 1080));
}

#[test]
fn bad_room_requests_are_invalid_argument() {
    let cfg = Config::default();
    for room in ["", "  ", "a\nb"] {
        assert!(matches!(JobSpec::from_room_request("e", &room_req(room), &cfg), Err(SpecError::Invalid(_))), "{room:?}");
    }
    let mut r = room_req("x");
    r.custom_base_url = "file:///etc/passwd".into();
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    let mut r = room_req("x");
    r.segment_outputs.clear();
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))));
    let mut r = room_req("x");
    r.stream_outputs.push(Default::default());
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))), "a stream output without urls");
    r.stream_outputs[0].urls = vec!["rtmp://h/app/key".into()];
    r.stream_outputs[0].protocol = proto::StreamProtocol::Srt as i32;
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(_))), "scheme against protocol");
    r.stream_outputs[0].protocol = proto::StreamProtocol::Rtmp as i32;
    r.segment_outputs.clear();
    let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
    assert_eq!((spec.streams.len(), spec.serve_hls), (1, false));
}

#[test]
fn file_names_are_filled_and_never_collide() {
    let cfg = Config::default();
    let mut r = room_req("team sync");
    r.file_outputs = vec![proto::EncodedFileOutput { filepath: "{room_name}/{time}.mp4".into(), ..Default::default() }];
    let spec = JobSpec::from_room_request("e", &r, &cfg).unwrap();
    assert!(spec.files[0].filepath.starts_with("team_sync/20") && spec.files[0].filepath.ends_with(".mp4"), "{:?}", spec.files);
    let mut w = req("http://a/");
    w.file_outputs = vec![proto::EncodedFileOutput { filepath: "init.mp4".into(), ..Default::default() }];
    let err = JobSpec::from_web_request("e", &w, &cfg).unwrap_err();
    assert!(matches!(&err, SpecError::Invalid(m) if m.contains("init segment")), "{err:?}");
    // Without a segment output there is no init segment to collide with.
    w.segment_outputs.clear();
    assert!(JobSpec::from_web_request("e", &w, &cfg).is_ok());
    w.segment_outputs = vec![proto::SegmentedFileOutput::default()];
    w.file_outputs[0].filepath = "live.m3u8/x.mp4".into();
    assert!(JobSpec::from_web_request("e", &w, &cfg).is_err(), "a folder where the live playlist is");
    w.file_outputs[0].filepath = "{room_name}.mp4".into();
    assert!(JobSpec::from_web_request("e", &w, &cfg).is_err(), "a web egress has no room name");
}

#[test]
fn v2_request_is_its_v1_equivalent() {
    use super::request_v2::{v1_request, V1Request};
    use proto::start_egress_request::{Encoding as E, Source};
    let out = |c| proto::Output { config: Some(c), storage: None };
    use proto::output::Config as C;
    let mut v2 = proto::StartEgressRequest {
        room_name: "r".into(),
        source: Some(Source::Template(proto::TemplateSource { layout: "speaker".into(), ..Default::default() })),
        encoding: Some(E::Preset(proto::EncodingOptionsPreset::H2641080p30 as i32)),
        outputs: vec![
            out(C::Segments(proto::SegmentedFileOutput::default())),
            out(C::File(proto::FileOutput { filepath: "a.mp4".into(), ..Default::default() })),
            out(C::Stream(proto::StreamOutput { urls: vec!["rtmp://example.com/live/k".into()], ..Default::default() })),
            out(C::Images(proto::ImageOutput::default())),
        ],
        ..Default::default()
    };
    let Ok(V1Request::Room(room)) = v1_request(&v2) else { panic!("a template source is a room composite") };
    assert_eq!((room.room_name.as_str(), room.layout.as_str()), ("r", "speaker"));
    assert_eq!((room.segment_outputs.len(), room.file_outputs.len(), room.stream_outputs.len(), room.image_outputs.len()), (1, 1, 1, 1));
    assert_eq!(room.file_outputs[0].filepath, "a.mp4");
    assert!(
        matches!(room.options, Some(proto::room_composite_egress_request::Options::Preset(p)) if p == proto::EncodingOptionsPreset::H2641080p30 as i32)
    );

    v2.source = Some(Source::Web(proto::WebSource { url: "http://example.com/p".into(), ..Default::default() }));
    let spec = JobSpec::from_start_request("EG_v2", &v2, &Config::default()).unwrap();
    assert_eq!(spec.url, "http://example.com/p");
    assert_eq!((spec.files.len(), spec.streams.len(), spec.images.len(), spec.serve_hls), (1, 1, 1, true));
    assert_eq!(spec.video.unwrap().width, 1920);

    let refused = |f: &dyn Fn(&mut proto::StartEgressRequest)| {
        let mut r = v2.clone();
        f(&mut r);
        v1_request(&r).unwrap_err()
    };
    assert!(
        matches!(refused(&|r| r.source = Some(Source::Media(Default::default()))), SpecError::Unsupported(m) if m.contains("source.media"))
    );
    assert!(matches!(refused(&|r| r.storage = Some(Default::default())), SpecError::Unsupported(m) if m.starts_with("storage")));
    assert!(matches!(refused(&|r| r.webhooks = vec![Default::default()]), SpecError::Unsupported(m) if m.starts_with("webhooks")));
    assert!(
        matches!(refused(&|r| r.outputs[1].storage = Some(Default::default())), SpecError::Unsupported(m) if m.starts_with("outputs[1].storage"))
    );
    assert!(matches!(refused(&|r| r.outputs.clear()), SpecError::Invalid(_)));
    assert!(matches!(refused(&|r| r.outputs[0].config = None), SpecError::Invalid(m) if m.starts_with("outputs[0]")));
    assert!(matches!(refused(&|r| r.source = None), SpecError::Invalid(_)));
}

/// Issue 17.1: what the policy refuses without DNS is invalid_argument at request time, with
/// the address and the reason; this node's own origin and its SFU stay reachable.
#[test]
fn refused_targets_are_invalid_argument_at_request_time() {
    let cfg = Config::default();
    let refused = |url: &str| match JobSpec::from_web_request("e", &req(url), &cfg) {
        Err(SpecError::Invalid(m)) => m,
        other => panic!("{url}: {other:?}"),
    };
    assert!(refused("http://127.0.0.1:9222/json").contains("127.0.0.1:9222 is loopback"), "{}", refused("http://127.0.0.1:9222/json"));
    assert!(refused("http://169.254.169.254/latest/meta-data/").contains("link-local"));
    assert!(refused("http://[::ffff:10.0.0.1]/").contains("private"));
    assert!(refused("http://localhost:8080/").contains("localhost"));
    // The templates on this node's own origin are not refused, names are judged later.
    assert!(JobSpec::from_web_request("e", &req(&format!("{}/templates/demo/animated.html", cfg.local_url())), &cfg).is_ok());
    assert!(JobSpec::from_web_request("e", &req("http://example.com/"), &cfg).is_ok());

    let mut r = room_req("x");
    r.custom_base_url = "http://192.168.1.1/tpl.html".into();
    assert!(matches!(JobSpec::from_room_request("e", &r, &cfg), Err(SpecError::Invalid(m)) if m.starts_with("custom_base_url refused")));
    for url in ["rtmp://127.0.0.1/live/k", "rtmp://169.254.169.254:80/a/b", "srt://10.1.1.1:9000"] {
        let mut r = room_req("x");
        r.stream_outputs.push(proto::StreamOutput { urls: vec![url.into()], ..Default::default() });
        match JobSpec::from_room_request("e", &r, &cfg) {
            Err(SpecError::Invalid(m)) => assert!(m.contains("refused by the network policy") && !m.contains("/k\""), "{m}"),
            other => panic!("{url}: {other:?}"),
        }
    }

    // network.allow opens a range; network.deny wins over it.
    let mut open = Config::default();
    open.network.allow.push("10.0.0.0/8".parse().unwrap());
    open.network.deny.push("10.9.0.0/16".parse().unwrap());
    let mut r = room_req("x");
    r.stream_outputs.push(proto::StreamOutput { urls: vec!["srt://10.1.1.1:9000".into()], ..Default::default() });
    assert!(JobSpec::from_room_request("e", &r, &open).is_ok());
    r.stream_outputs[0].urls = vec!["srt://10.9.1.1:9000".into()];
    assert!(matches!(JobSpec::from_room_request("e", &r, &open), Err(SpecError::Invalid(m)) if m.contains("network.deny")));
}
