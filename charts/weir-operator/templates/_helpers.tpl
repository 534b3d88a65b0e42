{{/* Names shared by every template of the chart. */}}

{{- define "weir-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "weir-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "weir-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weir-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "weir-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: weir
{{- end -}}

{{- define "weir-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "weir-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* What the operator may do where it works: a ClusterRole, or a Role per watched namespace. */}}
{{- define "weir-operator.rules" -}}
- apiGroups: [weir.dev]
  resources: [streamjobs]
  verbs: [get, list, watch, patch, update]
- apiGroups: [weir.dev]
  resources: [streamjobs/status]
  verbs: [get, patch, update]
- apiGroups: [weir.dev]
  resources: [streamjobs/finalizers]
  verbs: [update]
- apiGroups: [weir.dev]
  resources: [streamjobsnapshots]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [weir.dev]
  resources: [streamjobsnapshots/status]
  verbs: [get, patch, update]
- apiGroups: [weir.dev]
  resources: [streamjobsnapshots/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, create, patch, update, delete]
# Pods: the JobManager's address; the pre-flight check's pod (job.preflight, on by default)
# is created, watched (its end wakes the operator) and removed.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, deletecollection]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
