//! Writing the cluster's files with the mode (and, through `ServerUser::give`, the
//! owner) that PostgreSQL and libpq insist on; and finding programs on `PATH`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Creates or truncates `path` with `contents`, and sets `mode` even when the file existed.
pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    let step = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(step(), e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(step(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(step(), e))
}

/// Creates directory `path` with `mode`.
pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), Error> {
    let step = || format!("creating {}", path.display());
    std::fs::create_dir(path).map_err(|e| Error::io(step(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(step(), e))
}

/// What a finished command said: its stderr, or its stdout when stderr is empty
/// (trimmed), for error messages.
pub(crate) fn output_text(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if stderr.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr
    }
}

/// Every executable file named `program` in the directories of `PATH`, in `PATH` order:
/// the one search for programs in the testkit.
pub(crate) fn on_path(program: &str) -> impl Iterator<Item = PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let program = program.to_owned();
    dirs.into_iter()
        .map(move |dir| dir.join(&program))
        .filter(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
