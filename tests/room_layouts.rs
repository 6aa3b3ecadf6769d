//! Our room template's layouts, judged from decoded output frames: room composites of the
//! template's `demo` adapter (synthetic participants, each a solid colour from a fixed
//! palette), given as `custom_base_url`, so no SFU is needed. Geometry at 1280×720 from
//! web/README.md: grid cells, the speaker stage (1024×720) and its strip, the screen share on
//! the stage, dark and light backgrounds, and a live switch to single-speaker.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const S: Duration = Duration::from_secs(1);

/// The demo adapter's palette (web/src/room/demo.ts), participant i = entry i.
const PALETTE: [u32; 16] = [
    0xff0000, 0x66ffc6, 0xff00bf, 0x79ff66, 0x8000ff, 0xecff66, 0x0040ff, 0xff9f66, 0x00ffff, 0xff669f, 0x00ff40, 0xec66ff, 0x80ff00,
    0x7966ff, 0xffbf00, 0x66c6ff,
];
const DARK_BG: u32 = 0x111214;
const LIGHT_BG: u32 = 0xeef0f3;
const WHITE: u32 = 0xffffff;

fn rgb(c: u32) -> [i32; 3] {
    [(c >> 16) as i32 & 0xff, (c >> 8) as i32 & 0xff, c as i32 & 0xff]
}

/// The newest output frame at full size.
struct Frame(Vec<u8>);

impl Frame {
    fn at(&self, x: usize, y: usize) -> [i32; 3] {
        let i = (y * 1280 + x) * 3;
        [self.0[i] as i32, self.0[i + 1] as i32, self.0[i + 2] as i32]
    }

    /// Whether the 9×9 block around (x, y) averages to `colour` (H.264's 4:2:0 and quantising
    /// move solid colours by a few steps).
    fn shows(&self, x: usize, y: usize, colour: u32) -> bool {
        let mut sum = [0; 3];
        for dy in 0..9 {
            for dx in 0..9 {
                let p = self.at(x + dx - 4, y + dy - 4);
                (0..3).for_each(|c| sum[c] += p[c]);
            }
        }
        let want = rgb(colour);
        (0..3).map(|c| (sum[c] / 81 - want[c]).abs()).sum::<i32>() < 60
    }
}

async fn newest_frame(server: &Server, id: &str) -> Frame {
    let path = newest_segment(server, id).await;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    let size = 1280 * 720 * 3;
    assert!(out.status.success() && out.stdout.len() >= size, "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    Frame(out.stdout[out.stdout.len() - size..].to_vec())
}

/// Polls the output until `check` finds no fault; the last faults otherwise.
async fn wait_frame(server: &Server, id: &str, what: &str, check: impl Fn(&Frame) -> Vec<String>) {
    let deadline = Instant::now() + 15 * S;
    loop {
        let faults = check(&newest_frame(server, id).await);
        if faults.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            // The picture, for whoever reads the failure.
            let png = std::env::temp_dir().join(format!("roomcast-layout-{id}.png"));
            let _ = Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-i"])
                .arg(server.tmp.path().join("newest-segment.mp4"))
                .args(["-update", "1"])
                .arg(&png)
                .status();
            panic!("{what}: {faults:?} (last frame: {})", png.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn expect(faults: &mut Vec<String>, frame: &Frame, what: &str, x: usize, y: usize, colour: u32) {
    if !frame.shows(x, y, colour) {
        faults.push(format!("{what} at ({x},{y}) is {:?}, not #{colour:06x}", frame.at(x, y)));
    }
}

async fn start(server: &Server, query: &str, layout: &str) -> String {
    let base = format!("{}/templates/room/index.html?sfu=demo&{query}", server.url);
    let (code, info) = server
        .twirp("StartRoomCompositeEgress", json!({"room_name": "demo", "layout": layout, "custom_base_url": base, "segment_outputs": [{}]}))
        .await;
    assert_eq!(code, 200, "{info}");
    let id = info["egressId"].as_str().unwrap().to_string();
    server.wait_status(&id, "EGRESS_ACTIVE", 20 * S).await;
    server.wait_segments(&id, 1, 20 * S).await;
    id
}

/// Issue 6 (2): a 16-participant grid is 4×4 whole tiles, each its own participant's picture;
/// speaker puts the active speaker on the stage with the others in a strip; a screen share
/// takes the stage; -light is light; UpdateLayout to single-speaker fills the picture with the
/// speaker, live.
#[tokio::test(flavor = "multi_thread")]
async fn template_layouts_in_the_output() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;

    let id = start(&server, "participants=16", "grid").await;
    wait_frame(&server, &id, "16-participant grid", |f| {
        let mut faults = vec![];
        for (i, colour) in PALETTE.iter().enumerate() {
            // Cell i is 316×176 at (2 + 320·col, 2 + 180·row); its centre shows participant i.
            let (x, y) = (2 + 320 * (i % 4) + 158, 2 + 180 * (i / 4) + 88);
            expect(&mut faults, f, &format!("participant {i}"), x, y, *colour);
        }
        faults
    })
    .await;
    server.stop(&id, "EGRESS_COMPLETE").await;

    let id = start(&server, "participants=4&speaker=2", "speaker").await;
    wait_frame(&server, &id, "speaker layout", |f| {
        let mut faults = vec![];
        // The stage (1024×720 at 0,0) is participant 2; the strip (252×140 at x 1026) the others.
        expect(&mut faults, f, "stage", 512, 360, PALETTE[2]);
        expect(&mut faults, f, "stage corner", 100, 650, PALETTE[2]);
        for (slot, p) in [0, 1, 3].into_iter().enumerate() {
            expect(&mut faults, f, &format!("thumbnail {slot}"), 1026 + 126, 146 + 144 * slot + 70, PALETTE[p]);
        }
        expect(&mut faults, f, "strip background", 1152, 60, DARK_BG);
        faults
    })
    .await;
    // A live switch: the speaker alone fills the picture.
    let (code, info) = server.twirp("UpdateLayout", json!({"egress_id": id, "layout": "single-speaker"})).await;
    assert_eq!(code, 200, "{info}");
    wait_frame(&server, &id, "single-speaker after UpdateLayout", |f| {
        let mut faults = vec![];
        for (x, y) in [(640, 360), (1200, 100), (1200, 650), (60, 60)] {
            expect(&mut faults, f, "single speaker", x, y, PALETTE[2]);
        }
        faults
    })
    .await;
    let done = server.stop(&id, "EGRESS_COMPLETE").await;
    // The layout changed inside one unbroken stream: one timeline at 30 fps, no discontinuity.
    let playlist_url = done["segmentResults"][0]["playlistLocation"].as_str().unwrap().to_string();
    let (_, playlist) = server.get_text(&playlist_url).await;
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY") && !playlist.contains("#EXT-X-GAP"), "{playlist}");
    let (frames, duration) = frames_and_duration(&ffprobe(&playlist_url));
    assert!((frames / duration - 30.0).abs() <= 1.0, "{frames} frames in {duration:.2} s");

    let id = start(&server, "participants=4&screen=1", "grid").await;
    wait_frame(&server, &id, "screen share on the stage", |f| {
        let mut faults = vec![];
        // The share (white inside a black frame, letterboxed in 1024×720) takes the stage even
        // in the grid layout; the cameras move to the strip.
        expect(&mut faults, f, "screen share", 512, 360, WHITE);
        expect(&mut faults, f, "screen share frame", 15, 360, 0x000000);
        for (p, colour) in PALETTE.iter().take(4).enumerate() {
            expect(&mut faults, f, &format!("thumbnail {p}"), 1026 + 126, 2 + 144 * p + 70, *colour);
        }
        faults
    })
    .await;
    server.stop(&id, "EGRESS_COMPLETE").await;

    // Three tiles leave the bottom corners empty: the page's background shows there.
    for (layout, background) in [("grid", DARK_BG), ("grid-light", LIGHT_BG)] {
        let id = start(&server, "participants=3", layout).await;
        wait_frame(&server, &id, layout, |f| {
            let mut faults = vec![];
            expect(&mut faults, f, "tile", 320, 180, PALETTE[0]);
            expect(&mut faults, f, "background", 80, 640, background);
            faults
        })
        .await;
        server.stop(&id, "EGRESS_COMPLETE").await;
    }
    server.assert_no_leftovers(10 * S).await;
}
