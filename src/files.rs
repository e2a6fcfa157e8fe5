//! Writing state files safely: the content goes to a temporary file that is fsynced, then
//! renamed over the target, so a reader never sees half a file and a crash leaves either the
//! old or the new content.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically (creating its directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
