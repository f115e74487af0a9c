//! The journal: a JSON file under /run/nix-dabei recording each step's outcome, rewritten atomically
//! after every step, so that a later run (or a person) can see how far an install got.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where journals go unless NIX_DABEI_STATE_DIR says otherwise.
pub const DEFAULT_DIR: &str = "/run/nix-dabei";

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// applied, skipped or failed.
    pub outcome: String,
    /// Seconds since the epoch when it ended.
    pub at: u64,
    /// How long it ran.
    pub seconds: f64,
    /// The error, for a failed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The journal of one plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// Identifies the plan (a hash of its JSON form).
    pub plan: String,
    /// Host name of the plan.
    pub host: String,
    /// Outcomes by step id.
    pub steps: BTreeMap<String, Entry>,
    /// The GUID of each pool this plan made or imported, by pool name: another pool of that name is
    /// never taken for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

impl Journal {
    /// Reads the journal of `plan` in `dir` without creating or writing anything (for previews); an
    /// empty journal when there is none yet.
    pub fn load(dir: &Path, plan: &str, host: &str) -> std::io::Result<Self> {
        let path = dir.join("journal.json");
        let existing: Option<Journal> = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).ok(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let mut journal = match existing {
            Some(journal) if journal.plan == plan => journal,
            _ => Journal {
                plan: plan.to_string(),
                host: host.to_string(),
                steps: BTreeMap::new(),
                pools: BTreeMap::new(),
                path: PathBuf::new(),
            },
        };
        journal.path = path;
        Ok(journal)
    }

    /// Opens the journal of `plan` in `dir` for a run, keeping earlier outcomes of the same plan, and
    /// writes it once: a state directory that cannot be written fails here, before the first step.
    pub fn open(dir: &Path, plan: &str, host: &str) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let journal = Self::load(dir, plan, host)?;
        journal.save()?;
        Ok(journal)
    }

    /// The directory journals go to: NIX_DABEI_STATE_DIR or /run/nix-dabei.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("NIX_DABEI_STATE_DIR").map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from)
    }

    /// Records an outcome and writes the journal, when that changed it.
    pub fn record(&mut self, id: &str, outcome: &str, seconds: f64, error: Option<String>) -> std::io::Result<()> {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // A step found done keeps the record of the run that applied it: the install's probe relies on it.
        // The journal is then as it was, and is not written again (a mount of an installed system finds
        // every step done: one synced write per step was a tenth of its time in `vm-tests bench`).
        if outcome == "skipped" && self.applied(id) {
            return Ok(());
        }
        self.steps.insert(id.to_string(), Entry { outcome: outcome.to_string(), at, seconds, error });
        self.save()
    }

    /// Writes the journal so that a power cut leaves the old or the new one, whole: a temporary file of
    /// this process, flushed, renamed over the journal, and the directory flushed.
    fn save(&self) -> std::io::Result<()> {
        use std::io::Write;
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let temporary = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Records the GUID of a pool this plan made or imported, and writes the journal.
    pub fn record_pool(&mut self, pool: &str, guid: &str) -> std::io::Result<()> {
        self.pools.insert(pool.to_string(), guid.to_string());
        self.save()
    }

    /// Whether a step was applied by an earlier run of the same plan.
    pub fn applied(&self, id: &str) -> bool {
        self.steps.get(id).is_some_and(|e| e.outcome == "applied")
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step found done that an earlier run applied leaves the journal as it was, unwritten; a step found
    /// done for the first time is recorded.
    #[test]
    fn a_step_found_done_again_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("nix-dabei-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut journal = Journal::open(&dir, "plan", "host").expect("journal");
        journal.record("mkfs:main/root", "applied", 1.0, None).expect("applied");
        let path = dir.join("journal.json");
        let before = fs::read_to_string(&path).expect("written");
        fs::remove_file(&path).expect("removed, to see whether it is written again");
        journal.record("mkfs:main/root", "skipped", 0.1, None).expect("skipped");
        assert!(!path.exists(), "the journal was written again for a step it already had as applied");
        fs::write(&path, &before).expect("put back");
        journal.record("mount:/", "skipped", 0.1, None).expect("skipped, first seen");
        let after = fs::read_to_string(&path).expect("written");
        let _ = fs::remove_dir_all(&dir);
        assert!(after.contains("mount:/") && after.contains("\"applied\""), "{after}");
    }
}
