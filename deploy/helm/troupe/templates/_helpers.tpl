{{/* The chart's name, trimmed to a label's length. */}}
{{- define "troupe.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's objects' name. */}}
{{- define "troupe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "troupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "troupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "troupe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "troupe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The NATS the nodes join: the external URL, else the chart's own. */}}
{{- define "troupe.natsUrl" -}}
{{- if .Values.cluster.natsUrl -}}
{{- .Values.cluster.natsUrl -}}
{{- else -}}
{{- printf "nats://%s-nats:4222" (include "troupe.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuses values that cannot work, with what to change. */}}
{{- define "troupe.validate" -}}
{{- if not .Values.auth.existingSecret -}}
{{- fail "auth.existingSecret: name a Secret holding the owner's token (key auth.tokenKey); the node listens off loopback, so a token is required" -}}
{{- end -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if and (gt $replicas 1) (not .Values.cluster.enabled) -}}
{{- fail "replicaCount: more than one node needs cluster.enabled (nodes share sessions over NATS)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not .Values.cluster.enabled) -}}
{{- fail "autoscaling.enabled: scaling out needs cluster.enabled" -}}
{{- end -}}
{{- if and .Values.cluster.enabled (not .Values.cluster.natsUrl) (not .Values.nats.deploy) -}}
{{- fail "cluster.enabled: set cluster.natsUrl to your NATS (with JetStream), or nats.deploy=true for the chart's own" -}}
{{- end -}}
{{- end -}}

{{/* Troupe's own pods (NATS's, when the chart deploys it, have component nats). */}}
{{- define "troupe.nodeLabels" -}}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/component: node
{{- end -}}
