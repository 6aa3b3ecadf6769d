//! Output names: LiveKit's filename placeholders filled as livekit/egress fills them
//! (`{room_name}`, `{room_id}`, `{time}` = `2006-01-02T150405`, `{utc}` =
//! `20060102150405` plus milliseconds), every name kept inside the egress folder, and no two
//! outputs of one egress writing the same path (a file called `init.mp4` beside a segment
//! output would overwrite the HLS init segment).

use super::types::{FileSpec, HlsSpec, ImageSpec, MULTIVARIANT_NAME};
use super::SpecError;
use crate::clock::file_stamp;

/// What the placeholders of one request are filled with.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// Room name and id of a room composite; a web egress has no room.
    pub room: Option<(String, String)>,
    pub time: String,
    pub utc: String,
}

impl Placeholders {
    pub fn at(unix_ms: u64, room: Option<(&str, &str)>) -> Self {
        let secs = unix_ms / 1000;
        let utc = file_stamp(secs).replace(['-', 'T'], "") + &format!("{:03}", unix_ms % 1000);
        Self { room: room.map(|(n, i)| (n.to_string(), i.to_string())), time: file_stamp(secs), utc }
    }

    /// Who the egress records, for default file names: the room, or `web` (as LiveKit names them).
    pub fn identifier(&self) -> String {
        self.room.as_ref().map(|(n, _)| path_safe(n)).unwrap_or_else(|| "web".into())
    }

    fn fill(&self, raw: &str, what: &str) -> Result<String, SpecError> {
        let mut name = raw.replace("{time}", &self.time).replace("{utc}", &self.utc);
        for key in ["{room_name}", "{room_id}"] {
            if !name.contains(key) {
                continue;
            }
            let Some((room, id)) = &self.room else {
                return Err(SpecError::invalid(format!("{what} {raw:?}: {key} is only known for a room composite egress")));
            };
            let value = if key == "{room_name}" { room } else { id };
            name = name.replace(key, &path_safe(value));
        }
        Ok(name)
    }
}

/// A room name or id as one path component: characters a file name may not carry become `_`.
fn path_safe(s: &str) -> String {
    let out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    match out.as_str() {
        "" | "." | ".." => "_".into(),
        _ => out,
    }
}

/// Fills the placeholders of `template` (or `default` when it is empty) and checks the result
/// is a relative path inside the egress folder.
pub fn output_name(template: &str, default: &str, what: &str, ph: &Placeholders) -> Result<String, SpecError> {
    let raw = if template.is_empty() { default } else { template };
    let name = ph.fill(raw, what)?;
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let ok_path = !name.is_empty() && !name.starts_with('/') && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if !ok_chars || !ok_path || name.len() > 255 {
        return Err(SpecError::invalid(format!(
            "{what} {raw:?} must be a relative path of letters, digits, '.', '_', '-' and '/' (at most 255 characters)"
        )));
    }
    Ok(name)
}

/// A file output's path as livekit/egress makes it: empty or ending in `/` gets
/// `{identifier}-{time}{ext}` in that folder; without the extension, the extension is added.
pub fn file_path(template: &str, ext: &str, ph: &Placeholders) -> Result<String, SpecError> {
    let t = if template.is_empty() || template.ends_with('/') {
        format!("{template}{}-{}{ext}", ph.identifier(), ph.time)
    } else if template.ends_with(ext) {
        template.to_string()
    } else {
        let known = [".mp4", ".ogg", ".webm", ".m3u8", ".ts"];
        let stem = known.iter().find_map(|k| template.strip_suffix(k)).unwrap_or(template);
        format!("{stem}{ext}")
    };
    output_name(&t, "", "filepath", ph)
}

/// Refuses outputs of one egress that would write the same path, or put a folder where
/// another output writes a file.
pub fn check_collisions(hls: Option<&HlsSpec>, files: &[FileSpec], images: &[ImageSpec]) -> Result<(), SpecError> {
    // (path, what writes it); a path ending in '/' is a folder the HLS writer owns.
    let mut taken: Vec<(String, String)> = vec![];
    if let Some(h) = hls {
        let folders = std::iter::once(String::new()).chain(h.ladder.iter().map(|r| format!("{}/", r.name)));
        for f in folders {
            taken.push((format!("{f}{}", h.playlist_name), "the HLS playlist".into()));
            taken.push((format!("{f}{}", h.live_playlist_name), "the live HLS playlist".into()));
            taken.push((format!("{f}init.mp4"), "the HLS init segment".into()));
        }
        taken.push((MULTIVARIANT_NAME.into(), "the multivariant playlist".into()));
    }
    let clash = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"));
    let mut check = |path: String, what: String| -> Result<(), SpecError> {
        if let Some((_, other)) = taken.iter().find(|(p, _)| clash(&path, p)) {
            return Err(SpecError::invalid(format!("{what} {path:?} collides with {other}: choose another name")));
        }
        taken.push((path, what));
        Ok(())
    };
    for f in files {
        check(f.filepath.clone(), "file output".into())?;
    }
    for i in images {
        check(format!("{}.jpeg", i.filename_prefix), "image output".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ph() -> Placeholders {
        Placeholders::at(951_782_400_042, Some(("my room/1", "RM_abc")))
    }

    #[test]
    fn placeholders_are_filled_as_livekit_fills_them() {
        assert_eq!(output_name("{room_name}/{time}.mp4", "", "filepath", &ph()).unwrap(), "my_room_1/2000-02-29T000000.mp4");
        assert_eq!(output_name("{room_id}-{utc}", "", "x", &ph()).unwrap(), "RM_abc-20000229000000042");
        assert_eq!(file_path("", ".mp4", &ph()).unwrap(), "my_room_1-2000-02-29T000000.mp4");
        assert_eq!(file_path("rec/", ".ogg", &ph()).unwrap(), "rec/my_room_1-2000-02-29T000000.ogg");
        assert_eq!(file_path("rec/a.ogg", ".mp4", &ph()).unwrap(), "rec/a.mp4");
        assert_eq!(file_path("a", ".mp4", &ph()).unwrap(), "a.mp4");
        let web = Placeholders::at(0, None);
        assert_eq!(file_path("", ".mp4", &web).unwrap(), "web-1970-01-01T000000.mp4");
        assert!(output_name("{room_name}.mp4", "", "filepath", &web).is_err(), "a web egress has no room");
        assert!(output_name("../{time}", "", "x", &ph()).is_err());
        assert!(output_name("{room_name}", "", "x", &Placeholders::at(0, Some(("..", "i")))).is_ok_and(|n| n == "_"));
    }
}
