//! `--recovery-dir`: what a `weir run` or `weir jobmanager` process leaves for the next process
//! started with the same directory, so a crashed process resumes from its run's latest
//! completed checkpoint without anybody searching for it (docs/fault-tolerance.md, *Resuming
//! a crashed process*).

use anyhow::{Context, Result};
use std::path::Path;
use weir_contract::{layout, options};
use weir_engine::config::Config;

/// The file in the recovery directory: the run's job id, then what it was restored from.
const RECOVERY_FILE: &str = "last-run";

/// Where a restarted process resumes: the newest completed checkpoint of the run the previous
/// process recorded in `dir`, else what that run was restored from. `None` on the first start
/// (nothing recorded), so `execution.savepoint.path` applies as configured.
pub fn recover(dir: &Path, conf: &Config) -> Result<Option<String>> {
    let file = dir.join(RECOVERY_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut lines = text.lines();
    let job_id = lines.next().unwrap_or("").trim().to_string();
    let restored_from = lines.next().map(str::trim).filter(|l| !l.is_empty());
    let checkpointing = conf.checkpointing()?;
    if let (Some(checkpoints), false) = (&checkpointing.dir, job_id.is_empty()) {
        let store = weir_storage::open(checkpoints, &checkpointing.storage).with_context(|| {
            format!(
                "cannot open {} '{checkpoints}'",
                options::CHECKPOINTS_DIR.key
            )
        })?;
        let objects = store.list(&format!("{job_id}/")).with_context(|| {
            format!("cannot list the checkpoints of run {job_id} in {checkpoints}")
        })?;
        let newest = objects
            .iter()
            .filter_map(|o| {
                layout::checkpoint_of_metadata_key(o.path.strip_prefix(job_id.as_str())?)
            })
            .max();
        if let Some(n) = newest {
            return Ok(Some(
                store.uri(&format!("{job_id}/{}", layout::checkpoint_dir_name(n))),
            ));
        }
    }
    Ok(restored_from.map(str::to_string))
}

/// Resumes `conf` from what [`recover`] finds in `dir`, saying so on stderr (`who` names the
/// process for the message).
pub fn resume(dir: &Path, conf: &mut Config, who: &str) -> Result<()> {
    if let Some(path) = recover(dir, conf)? {
        eprintln!(
            "{who} restarted: resuming from {path} (latest state of the previous run, from {})",
            dir.display()
        );
        conf.set(options::SAVEPOINT_PATH.key, &path)?;
    }
    Ok(())
}

/// Records the run that just started (`job_id`, restored from `restored_from`) in `dir`.
pub fn record(dir: &Path, job_id: &str, restored_from: Option<&str>) -> Result<()> {
    let file = dir.join(RECOVERY_FILE);
    let record = format!("{job_id}\n{}\n", restored_from.unwrap_or_default());
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&file, record))
        .with_context(|| format!("cannot write {} (--recovery-dir)", file.display()))
}
