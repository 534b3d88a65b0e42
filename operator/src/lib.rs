//! The Weir Kubernetes operator: reconciles `StreamJob` resources into JobManager and
//! TaskManager pods. The CRD types and the reconciler arrive with the operator issue.
