{{- define "outpost.fullname" -}}
{{- if contains "outpost" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-outpost" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "outpost.labels" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "outpost.selector" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "outpost.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The TLS setup: certmanager, files (your secret or values) or auto. */}}
{{- define "outpost.tlsMode" -}}
{{- $cm := index .Values "cert-manager" -}}
{{- if $cm.enabled -}}certmanager
{{- else if or .Values.tls.secret .Values.tls.crt -}}files
{{- else -}}auto
{{- end -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt in files modes. */}}
{{- define "outpost.tlsSecret" -}}
{{- if eq (include "outpost.tlsMode" .) "certmanager" -}}{{ include "outpost.fullname" . }}-tls
{{- else if .Values.tls.secret -}}{{ .Values.tls.secret }}
{{- else -}}{{ include "outpost.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{- define "outpost.connectionSecret" -}}
{{- .Values.existingConnectionStringSecret | default (printf "%s-connection-string" (include "outpost.fullname" .)) -}}
{{- end -}}

{{/* Whether the trust DaemonSet uses the node selector. */}}
{{- define "outpost.trustNodeSelector" -}}
{{- $td := .Values.trustDistribution -}}
{{- if kindIs "bool" $td.useNodeSelector -}}{{ $td.useNodeSelector }}
{{- else -}}{{ not $td.skipNodeSelector }}
{{- end -}}
{{- end -}}

{{- define "outpost.validate" -}}
{{- if not .Values.service.clusterIP -}}
{{- fail "service.clusterIP is required: choose a free IP of the cluster's service range (nodes reach the registry at it and the certificate names it)" -}}
{{- end -}}
{{- if and (not .Values.connectionString) (not .Values.existingConnectionStringSecret) -}}
{{- fail "connectionString is required (or existingConnectionStringSecret): get it on the parent with outpost connected-registry get-settings --generate-password 1" -}}
{{- end -}}
{{- if and .Values.tls.crt (not .Values.tls.key) -}}
{{- fail "tls.key is required with tls.crt" -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the CA certificate nodes must trust. */}}
{{- define "outpost.caSecret" -}}
{{- if eq (include "outpost.tlsMode" .) "auto" -}}{{ .Release.Name }}-ca-cert
{{- else -}}{{ include "outpost.tlsSecret" . }}
{{- end -}}
{{- end -}}
