//! A/V sync measurement of an egress of `tests/pages/bench/avsync.html` (a white flash and a
//! 1 kHz beep once a second, meant to be simultaneous): decodes the recording with ffmpeg,
//! finds every flash onset in the picture and every beep onset in the sound, and pairs them.
//! Used by the A/V sync test and, run longer, by the benchmark.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One flash/beep pair: when the flash shows, and how much later the beep starts (ms; negative
/// means the sound comes first).
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub at_s: f64,
    pub offset_ms: f64,
}

#[derive(Debug)]
pub struct AvReport {
    pub flashes: usize,
    pub beeps: usize,
    pub pairs: Vec<Pair>,
    /// Onset times (s) of every flash and every beep, for telling which side moved.
    pub flash_s: Vec<f64>,
    pub beep_s: Vec<f64>,
}

impl AvReport {
    pub fn offsets(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.offset_ms).collect()
    }
    /// Least-squares slope of offset over time, ms per minute.
    pub fn drift_ms_per_min(&self) -> f64 {
        let n = self.pairs.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let (mx, my) = (self.pairs.iter().map(|p| p.at_s).sum::<f64>() / n, self.pairs.iter().map(|p| p.offset_ms).sum::<f64>() / n);
        let sxy: f64 = self.pairs.iter().map(|p| (p.at_s - mx) * (p.offset_ms - my)).sum();
        let sxx: f64 = self.pairs.iter().map(|p| (p.at_s - mx).powi(2)).sum();
        if sxx == 0.0 {
            0.0
        } else {
            sxy / sxx * 60.0
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

fn stream_start(probe: &Value, kind: &str) -> f64 {
    probe["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["codec_type"] == kind))
        .and_then(|s| s["start_time"].as_str())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no {kind} stream with a start time: {probe}"))
}

fn decode(input: &Path, args: &[&str]) -> Vec<u8> {
    let out =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(input).args(args).arg("-").output().expect("ffmpeg (apt install ffmpeg)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Flash onsets (s). The page draws each flash as a white bar growing from the left edge over
/// 110 ms, starting 10 ms before the beat: in the first frame that shows it, the lit share of
/// the columns says how long after the beat that frame was drawn, so the onset is placed
/// between frames rather than on the 33 ms frame grid.
fn flash_onsets(input: &Path, v_start: f64, fps: f64) -> Vec<f64> {
    const W: usize = 256;
    const H: usize = 36;
    const RAMP_S: f64 = 0.110;
    const LEAD_S: f64 = 0.010;
    let raw = decode(input, &["-map", "0:v:0", "-fps_mode", "passthrough", "-vf", &format!("scale={W}:{H},format=gray"), "-f", "rawvideo"]);
    let mut out = vec![];
    let mut lit_before = false;
    for (i, frame) in raw.chunks_exact(W * H).enumerate() {
        // A column is lit when most of its height is bright (the page's text is small).
        let lit = (0..W).filter(|&x| (0..H).filter(|&y| frame[y * W + x] > 128).count() > H / 2).count();
        let share = lit as f64 / W as f64;
        if !lit_before && share > 0.0 {
            out.push(v_start + i as f64 / fps - (share * RAMP_S - LEAD_S));
        }
        lit_before = share > 0.0;
    }
    out
}

/// Beep onsets (s): the first millisecond loud after at least 0.4 s of quiet.
fn beep_onsets(input: &Path, a_start: f64) -> Vec<f64> {
    const RATE: usize = 48_000;
    let raw = decode(input, &["-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le"]);
    let samples: Vec<f64> = raw.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0).collect();
    let win = RATE / 1000;
    let mut out = vec![];
    let mut quiet_ms = 1000;
    for (i, w) in samples.chunks(win).enumerate() {
        let rms = (w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64).sqrt();
        if rms > 0.05 {
            if quiet_ms >= 400 {
                // Refine to the first sample above a tenth of the tone's amplitude.
                let first = w.iter().position(|x| x.abs() > 0.03).unwrap_or(0);
                out.push(a_start + (i * win + first) as f64 / RATE as f64);
            }
            quiet_ms = 0;
        } else {
            quiet_ms += 1;
        }
    }
    out
}

/// Decodes `input` (a playlist or file with one video and one audio stream) and pairs each
/// flash with the beep nearest to it (within 0.4 s).
/// Onset times (s) of the beeps in a recording's first audio track.
pub fn beeps(input: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe").args(["-v", "error", "-show_streams", "-of", "json"]).arg(input).output().expect("ffprobe");
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    beep_onsets(input, stream_start(&probe, "audio"))
}

pub fn analyse(input: &Path, fps: f64) -> AvReport {
    let out = Command::new("ffprobe").args(["-v", "error", "-show_streams", "-of", "json"]).arg(input).output().expect("ffprobe");
    let probe: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let flashes = flash_onsets(input, stream_start(&probe, "video"), fps);
    let beeps = beep_onsets(input, stream_start(&probe, "audio"));
    let pairs = flashes
        .iter()
        .filter_map(|&f| {
            let b = beeps.iter().copied().min_by(|a, b| (a - f).abs().total_cmp(&(b - f).abs()))?;
            ((b - f).abs() < 0.4).then_some(Pair { at_s: f, offset_ms: (b - f) * 1000.0 })
        })
        .collect();
    AvReport { flashes: flashes.len(), beeps: beeps.len(), pairs, flash_s: flashes, beep_s: beeps }
}
