//! Prints a CustomResourceDefinition as YAML, generated from the Rust types: the StreamJob's
//! (no argument, or `streamjob`) or the StreamJobSnapshot's (`streamjobsnapshot`).
//! `crds/<kind>.yaml` is this output; `operator/check-crds.sh` fails when one is stale.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "streamjob".into());
    let yaml = match kind.as_str() {
        "streamjob" => weir_operator::crd_yaml()?,
        "streamjobsnapshot" => weir_operator::snapshot_crd_yaml()?,
        other => {
            return Err(
                format!("unknown CRD {other:?}; use streamjob or streamjobsnapshot").into(),
            );
        }
    };
    print!("{yaml}");
    Ok(())
}
