//! The memory backend's state file: what keys spent, so a restart does not reset budgets.
//!
//! One small JSON file, `spend.json` in `limits.state_dir`, rewritten whole and atomically
//! (a temporary file, fsync, rename): a crash leaves the old file or the new one, never half.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spend::{SpendCounter, Spending};

const FILE_NAME: &str = "spend.json";

/// The state file for `state_dir` (`""`: none).
pub(crate) fn state_file(state_dir: &str) -> Option<PathBuf> {
    (!state_dir.is_empty()).then(|| Path::new(state_dir).join(FILE_NAME))
}

/// One key's spending as saved: each period's index and micro-dollars.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SavedSpending {
    day: u64,
    day_micros: u64,
    month: u64,
    month_micros: u64,
}

impl SavedSpending {
    pub(crate) fn restore(&self) -> Spending {
        Spending {
            day: SpendCounter::restore(self.day, self.day_micros),
            month: SpendCounter::restore(self.month, self.month_micros),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    keys: HashMap<String, SavedSpending>,
}

/// The saved spending by key id; an absent or unreadable file is a fresh start (logged).
pub(crate) fn load(path: &Path) -> HashMap<String, SavedSpending> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(state) => state.keys,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "the spend state file is unreadable: starting from zero");
                HashMap::new()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the spend state file: starting from zero");
            HashMap::new()
        }
    }
}

/// Writes every key's spending, atomically.
pub(crate) fn save<'a>(
    path: &Path,
    keys: impl Iterator<Item = (&'a str, &'a Spending)>,
) -> std::io::Result<()> {
    let keys = keys
        .map(|(id, spending)| {
            let (day, day_micros) = spending.day.load();
            let (month, month_micros) = spending.month.load();
            (
                id.to_owned(),
                SavedSpending {
                    day,
                    day_micros,
                    month,
                    month_micros,
                },
            )
        })
        .collect();
    let bytes =
        serde_json::to_vec(&StateFile { version: 1, keys }).map_err(std::io::Error::other)?;
    write_atomically(path, &bytes)
}

/// Replaces `path` with `bytes` atomically (a temporary file, fsync, rename): a crash leaves
/// the old file or the new one, never half.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn spending_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_file(dir.path().to_str().unwrap()).unwrap();
        let spending = Spending::default();
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        spending.charge(1.25, now);
        save(&path, [("alice", &spending)].into_iter()).unwrap();
        let restored = load(&path)["alice"].restore();
        assert!(
            restored.check(1.0, 0.0, now).is_err(),
            "still spent after the restart"
        );
        assert!(restored.check(2.0, 0.0, now).is_ok());
        std::fs::write(&path, b"{torn").unwrap();
        assert!(
            load(&path).is_empty(),
            "a broken file is a fresh start, not a crash"
        );
    }
}
