//! Prints the StreamJob CustomResourceDefinition as YAML, generated from the Rust types.
//! `crds/streamjob.yaml` is this output; `operator/check-crds.sh` fails when it is stale.

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", weir_operator::crd_yaml()?);
    Ok(())
}
