//! Rebuild when the embedded templates change: `rust-embed` includes each file it saw, but a
//! file added to `templates/` (the room template that `npm run build` writes) is only seen
//! by a new build, and cargo scans a directory named here for any change.
fn main() {
    println!("cargo:rerun-if-changed=templates");
}
