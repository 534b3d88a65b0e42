//! The Weir Kubernetes operator: reconciles `StreamJob` resources into JobManager and
//! TaskManager pods, and carries job state across upgrades, suspensions and restarts.
//!
//! The crate is a pipeline of pure steps around a thin controller: [`crd`] defines the
//! resource, [`validate`] checks what the schema cannot, [`desired`] renders the desired
//! Kubernetes objects, and [`lifecycle`] decides the next rollout step from the spec, the
//! status and what the JobManager reports. None of them touch the Kubernetes client; the
//! [`controller`] connects them to the API server, the [`jobmanager`] REST client and
//! [`storage`], and exports [`metrics`]. [`snapshot`] is the same kind of pure machine for
//! `StreamJobSnapshot` resources.

pub mod controller;
pub mod crd;
pub mod desired;
pub mod duration;
pub mod jobmanager;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod names;
pub mod snapshot;
pub mod storage;
pub mod validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The StreamJob CRD, adjusted for old API servers: `Option`al enums get no `null` enum
/// member (`nullable: true` already admits null, and the operator never writes null), so the
/// schema means the same to every apiserver since 1.16.
pub fn crd() -> CustomResourceDefinition {
    for_old_apiservers(crd::StreamJob::crd())
}

/// The StreamJobSnapshot CRD, adjusted like [`crd`].
pub fn snapshot_crd() -> CustomResourceDefinition {
    for_old_apiservers(crd::StreamJobSnapshot::crd())
}

/// The StreamJob CRD as YAML, exactly as `crdgen` prints it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

/// The StreamJobSnapshot CRD as YAML, exactly as `crdgen streamjobsnapshot` prints it.
pub fn snapshot_crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&snapshot_crd())
}

fn for_old_apiservers(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).unwrap_or_default();
    strip_null_enum_members(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn strip_null_enum_members(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(members)) = map.get_mut("enum") {
                members.retain(|m| !m.is_null());
            }
            map.values_mut().for_each(strip_null_enum_members);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_null_enum_members),
        _ => {}
    }
}
