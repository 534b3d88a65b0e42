//! The generated CustomResourceDefinition: what a Kubernetes 1.20 API server needs to accept
//! it, the validation it carries, and that the checked-in YAML is current.

use serde_json::Value;

fn crd() -> Value {
    serde_json::to_value(weir_operator::crd()).unwrap()
}

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn walk<'a>(value: &'a Value, visit: &mut impl FnMut(&'a Value)) {
    visit(value);
    match value {
        Value::Object(map) => map.values().for_each(|v| walk(v, visit)),
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

#[test]
fn the_checked_in_crd_matches_the_rust_types() {
    let path = format!("{}/../crds/streamjob.yaml", env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(&path).expect("crds/streamjob.yaml exists");
    assert!(
        checked_in == weir_operator::crd_yaml().unwrap(),
        "crds/streamjob.yaml is stale; run: cargo run -p weir-operator --bin crdgen > crds/streamjob.yaml"
    );
}

#[test]
fn the_crd_names_group_version_scope_and_short_name() {
    let crd = crd();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["metadata"]["name"], "streamjobs.weir.dev");
    assert_eq!(crd["spec"]["group"], "weir.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "StreamJob");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["sj"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
}

#[test]
fn the_schema_is_structural_and_uses_nothing_newer_than_kubernetes_1_20() {
    let snapshot = serde_json::to_value(weir_operator::snapshot_crd()).unwrap();
    for schema in [
        schema(),
        snapshot["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
    ] {
        assert_structural(&schema);
    }
}

fn assert_structural(schema: &Value) {
    walk(schema, &mut |node| {
        if let Value::Object(map) = node {
            for key in map.keys() {
                assert!(
                    !matches!(
                        key.as_str(),
                        "x-kubernetes-validations" | "$ref" | "anyOf" | "oneOf" | "allOf" | "not"
                    ),
                    "schema uses {key}: {node}"
                );
                if let Some(Value::Array(members)) = map.get("enum") {
                    assert!(
                        members.iter().all(|m| !m.is_null()),
                        "null enum member: {node}"
                    );
                }
            }
            // Structural: every node that is not int-or-string or free-form declares a type.
            if map.contains_key("properties") || map.contains_key("items") {
                assert!(map.contains_key("type"), "untyped node {node}");
            }
        }
    });
}

#[test]
fn enums_minimums_patterns_and_defaults_are_in_the_schema() {
    let spec = &schema()["properties"]["spec"];
    let job = &spec["properties"]["job"]["properties"];
    assert_eq!(
        job["upgradeMode"]["enum"],
        serde_json::json!(["stateless", "savepoint", "last-state"])
    );
    assert_eq!(job["upgradeMode"]["default"], "stateless");
    assert_eq!(
        job["state"]["enum"],
        serde_json::json!(["running", "suspended"])
    );
    assert_eq!(job["parallelism"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(job["parallelism"]["default"], 1);
    assert_eq!(
        job["upgradeReadinessTimeout"]["pattern"],
        weir_operator::crd::DURATION_PATTERN
    );
    assert_eq!(
        spec["properties"]["taskManager"]["properties"]["replicas"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        spec["properties"]["podTemplate"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    let required = schema()["properties"]["spec"]["required"].clone();
    assert_eq!(required, serde_json::json!(["image", "job"]));
}

#[test]
fn field_doc_comments_become_descriptions() {
    let spec = &schema()["properties"]["spec"]["properties"];
    let description = spec["job"]["properties"]["upgradeMode"]["description"]
        .as_str()
        .unwrap();
    assert!(description.contains("stop"), "{description}");
    assert!(
        spec["image"]["description"]
            .as_str()
            .unwrap()
            .contains("Worker image")
    );
}

#[test]
fn printer_columns_show_state_lifecycle_ready_degraded_savepoint_age_parallelism_and_age() {
    let columns = crd()["spec"]["versions"][0]["additionalPrinterColumns"].clone();
    let shown: Vec<(String, String, String)> = columns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("Job State", "string", ".status.jobStatus.state"),
        ("Lifecycle", "string", ".status.lifecycleState"),
        // What `kubectl wait --for=condition=Ready` waits for, and why a job needs attention.
        (
            "Ready",
            "string",
            r#".status.conditions[?(@.type=="Ready")].status"#,
        ),
        (
            "Degraded",
            "string",
            r#".status.conditions[?(@.type=="Degraded")].reason"#,
        ),
        (
            "Last Savepoint",
            "date",
            ".status.savepoints.last.timestamp",
        ),
        ("Parallelism", "integer", ".spec.job.parallelism"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(shown, expected);
}

#[test]
fn the_snapshot_crd_is_checked_in_and_names_its_kind_fields_and_columns() {
    let path = format!(
        "{}/../crds/streamjobsnapshot.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let checked_in = std::fs::read_to_string(&path).expect("crds/streamjobsnapshot.yaml exists");
    assert!(
        checked_in == weir_operator::snapshot_crd_yaml().unwrap(),
        "crds/streamjobsnapshot.yaml is stale; run: operator/check-crds.sh --write"
    );
    let crd = serde_json::to_value(weir_operator::snapshot_crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "streamjobsnapshots.weir.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["sjs"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["required"], serde_json::json!(["jobName"]));
    assert_eq!(
        spec["properties"]["kind"]["enum"],
        serde_json::json!(["savepoint", "checkpoint"])
    );
    assert_eq!(spec["properties"]["disposeOnDelete"]["default"], false);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(
        status["state"]["enum"],
        serde_json::json!(["Pending", "InProgress", "Completed", "Failed"])
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Job", "Kind", "State", "Trigger", "Path", "Age"]);
}
