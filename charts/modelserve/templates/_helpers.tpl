{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "modelserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name
already contains it; truncated to 63 characters.
*/}}
{{- define "modelserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name with a suffix, still within 63 characters. */}}
{{- define "modelserve.suffixed" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "modelserve.fullname" (index . 0) | trunc (int (sub 62 (len $suffix)))) $suffix | trimSuffix "-" }}
{{- end }}

{{- define "modelserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelserve.labels" -}}
helm.sh/chart: {{ include "modelserve.chart" . }}
{{ include "modelserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modelserve
{{- end }}

{{- define "modelserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "modelserve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Lease name leader election uses. */}}
{{- define "modelserve.leaseName" -}}
{{- default (include "modelserve.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Values that cannot be expressed in values.schema.json, checked with clear messages. */}}
{{- define "modelserve.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: replicas would all reconcile at once and fight. Set leaderElection.enabled=true, or replicas=1." (int .Values.replicas)) }}
{{- end }}
{{- with .Values.leaderElection }}
{{- if not (and (gt (float64 .leaseDuration) (float64 .renewDeadline)) (gt (float64 .renewDeadline) (float64 .retryPeriod))) }}
{{- fail (printf "leaderElection timings must satisfy leaseDuration > renewDeadline > retryPeriod; got %v > %v > %v" .leaseDuration .renewDeadline .retryPeriod) }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) }}
{{- fail "metrics.serviceMonitor.enabled is true but the cluster has no monitoring.coreos.com/v1 ServiceMonitor (install prometheus-operator first, or pass --api-versions monitoring.coreos.com/v1/ServiceMonitor to `helm template`)." }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) }}
{{- fail "prometheusRule.enabled is true but the cluster has no monitoring.coreos.com/v1 PrometheusRule (install prometheus-operator first, or pass --api-versions monitoring.coreos.com/v1/PrometheusRule to `helm template`)." }}
{{- end }}
{{- end }}
