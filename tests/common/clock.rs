//! Reads back the wall clock that tests/pages/bench/clock.html draws into every frame (its
//! header comment has the layout): for each decoded frame of a recording, its presentation
//! time and the page's `Date.now()` when it was drawn, or None where the code is not on the
//! picture (a page not yet drawn, a browser being relaunched). The player-side twin of this
//! decoder is decodeClock() in tests/node/play.mjs.

use std::process::Command;

const S: usize = 24;
const X0: usize = 16;
const Y0: usize = 16;
/// The code's rows, as cropped from the top of a 1280×720 picture.
const CODE_H: usize = 112;
const W: usize = 1280;

/// Presentation times (seconds) of every video frame of `input`.
pub fn frame_pts(input: &str) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time", "-of", "csv=p=0", input])
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe {input}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().trim_end_matches(',').parse().ok()).collect()
}

/// Each frame of `input` (a 1280×720 recording of the clock page): (pts, the drawn clock).
pub fn clock_frames(input: &str) -> Vec<(f64, Option<u64>)> {
    let pts = frame_pts(input);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", input, "-map", "0:v:0", "-fps_mode", "passthrough"])
        .args(["-vf", &format!("crop={W}:{CODE_H}:0:0,format=gray"), "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {input}: {}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<Option<u64>> = out.stdout.chunks_exact(W * CODE_H).map(read_clock).collect();
    assert_eq!(frames.len(), pts.len(), "{input}: decoded frames vs probed timestamps");
    pts.into_iter().zip(frames).collect()
}

/// The square's brightness: the mean of its middle 12×12 pixels.
fn square(gray: &[u8], row: usize, col: usize) -> u32 {
    let (x, y) = (X0 + col * S + 6, Y0 + row * S + 6);
    let mut sum = 0u32;
    for dy in 0..12 {
        for dx in 0..12 {
            sum += gray[(y + dy) * W + x + dx] as u32;
        }
    }
    sum / 144
}

/// Row 0's 48 bits, each checked against its inverse in row 1, and both rows' guards.
fn read_clock(gray: &[u8]) -> Option<u64> {
    let bit = |row, col| match square(gray, row, col) {
        v if v > 170 => Some(true),
        v if v < 85 => Some(false),
        _ => None,
    };
    let guards = [(0, true), (1, false), (50, false), (51, true)];
    for (col, white) in guards {
        if bit(0, col)? != white || bit(1, col)? == white {
            return None;
        }
    }
    let mut t = 0u64;
    for col in 2..50 {
        let b = bit(0, col)?;
        if bit(1, col)? == b {
            return None;
        }
        t = t << 1 | b as u64;
    }
    Some(t)
}

/// The longest stretch of output time (seconds) in which no frame showed a new clock value:
/// what a viewer saw frozen or blank. Counted from the first readable frame to the last.
pub fn longest_gap(frames: &[(f64, Option<u64>)]) -> f64 {
    let mut last: Option<(f64, u64)> = None;
    let mut gap = 0.0f64;
    for (pts, t) in frames {
        let Some(t) = t else { continue };
        match last {
            Some((_, lt)) if *t <= lt => {}
            Some((lp, _)) => {
                gap = gap.max(pts - lp);
                last = Some((*pts, *t));
            }
            None => last = Some((*pts, *t)),
        }
    }
    gap
}
